"""Where the demo leaves its processes' logs (fresh-user finding: every demo, and every
test run, left a ``provisioner-demo-*`` folder in the temporary directory)."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import click
import pytest

from provisioner.harness import free_port
from provisioner.sim import demo
from provisioner.sim.demo import DemoConfig, run_demo


@pytest.fixture
def tmpdir_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _left(where: Path) -> list[Path]:
    return sorted(where.glob("provisioner-demo-*"))


def test_a_demo_that_cannot_reach_redis_leaves_no_folder(tmpdir_here: Path) -> None:
    with pytest.raises(click.ClickException, match="does not answer"):
        run_demo(DemoConfig(redis_url=f"redis://127.0.0.1:{free_port()}/0", duration_s=1))
    assert _left(tmpdir_here) == []


@pytest.mark.parametrize("fails", [False, True])
def test_a_temporary_log_folder_goes_once_the_demo_has_its_scorecard(
    tmpdir_here: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    """The live run is stood in for (this test is about the folder, not the stack): a
    demo that ends with its scorecard removes its temporary folder; one that fails keeps
    it and says where it is; a ``--logdir`` is never removed."""
    card = object()

    async def fake_run(cfg: DemoConfig, url: str, procs: Any, wl: Any) -> Any:
        (procs.logdir / "replica-a.log").write_text("log\n")
        if fails:
            raise click.ClickException("a replica did not start")
        return card

    monkeypatch.setattr(demo, "_run", fake_run)
    if fails:
        with pytest.raises(click.ClickException):
            run_demo(DemoConfig(redis_url=redis_url))
        assert [p.name for p in _left(tmpdir_here)[0].iterdir()] == ["replica-a.log"]
    else:
        assert run_demo(DemoConfig(redis_url=redis_url)) == (card, None)
        assert _left(tmpdir_here) == []
    given = tmpdir_here / "mine"
    monkeypatch.setattr(demo, "_run", fake_run)
    with pytest.raises(click.ClickException) if fails else contextlib.nullcontext():
        run_demo(DemoConfig(redis_url=redis_url, logdir=str(given)))
    assert (given / "replica-a.log").exists()
