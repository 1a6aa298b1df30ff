"""The policies by name: :data:`POLICY_NAMES`, :func:`make_policy`, :func:`run_knobs`."""

from __future__ import annotations

from typing import Any

from provisioner.policies.base import Policy
from provisioner.policies.basestock import BaseStockConfig, BaseStockPolicy
from provisioner.policies.hybrid import HybridConfig, HybridHistogramPolicy
from provisioner.policies.predictive import (
    DEFAULT_MISS_COST_B,
    PredictiveConfig,
    PredictivePolicy,
)
from provisioner.policies.reactive import ReactivePolicy
from provisioner.policies.static import StaticPoolPolicy

__all__ = ["POLICY_NAMES", "make_policy", "run_knobs"]

POLICY_NAMES = ("predictive", "basestock", "reactive", "static", "hybrid")


def _config(cls: Any, knobs: dict[str, float]) -> Any:
    defaults = cls()
    fields = cls.__dataclass_fields__
    unknown = set(knobs) - set(fields)
    if unknown:
        raise ValueError(f"unknown knobs for {cls.__name__}: {sorted(unknown)}")

    def cast(k: str, v: float) -> Any:
        default = getattr(defaults, k)
        return float(v) if default is None else type(default)(v)

    return cls(**{k: cast(k, v) for k, v in knobs.items()})


def run_knobs(
    policy: str,
    *,
    miss_cost_b: float = DEFAULT_MISS_COST_B,
    miss_cost: float | None = None,
    keep_alive: float = 60.0,
    z: float = 1.64,
    min_spare: int | None = None,
    half_life: float = 60.0,
) -> dict[str, float]:
    """The knobs of ``policy`` from the options of ``provisioner run`` (seconds,
    node-seconds and boot times), for :func:`make_policy`: what each policy takes of them,
    and its own defaults where ``min_spare`` is None (predictive 0, basestock 1, static's
    pool 4).  ``miss_cost`` (node-seconds), when given, replaces ``miss_cost_b`` (boot
    times).

    Raises:
        ValueError: unknown policy name.
    """
    if policy == "predictive":
        knobs: dict[str, float] = {"miss_cost_b": miss_cost_b, "min_spare": min_spare or 0}
        if miss_cost is not None:
            knobs["miss_cost_s"] = miss_cost
        return knobs
    if policy == "basestock":
        return {
            "z": z,
            "min_spare": 1 if min_spare is None else min_spare,
            "half_life_s": half_life,
            "keep_alive_s": keep_alive,
        }
    if policy == "static":
        return {"k": 4 if min_spare is None else min_spare, "keep_alive_s": keep_alive}
    if policy == "hybrid":
        return {"fixed_keep_alive_s": keep_alive}
    if policy == "reactive":
        return {"keep_alive_s": keep_alive}
    raise ValueError(f"unknown policy {policy!r}: one of {', '.join(POLICY_NAMES)}")


def make_policy(name: str, **knobs: float) -> Policy:
    """Build a policy by name (one of :data:`POLICY_NAMES`) with its knobs.

    Raises:
        ValueError: unknown name or knob.
    """
    if name == "predictive":
        return PredictivePolicy(_config(PredictiveConfig, knobs))
    if name == "hybrid":
        return HybridHistogramPolicy(_config(HybridConfig, knobs))
    if name == "basestock":
        fields = BaseStockConfig.__dataclass_fields__
        kw = {k: type(getattr(BaseStockConfig(), k))(v) for k, v in knobs.items() if k in fields}
        return BaseStockPolicy(BaseStockConfig(**kw))
    if name == "reactive":
        return ReactivePolicy(float(knobs.get("keep_alive_s", 0.0)))
    if name == "static":
        return StaticPoolPolicy(int(knobs.get("k", 3)), float(knobs.get("keep_alive_s", 60.0)))
    raise ValueError(f"unknown policy {name!r}: one of {', '.join(POLICY_NAMES)}")
