"""The folders tell the architecture, and these tests keep them honest.

* ``provisioner.core`` (what ``provisioner run`` needs) and the ``run`` command import
  nothing from the emulated world (``provisioner.sim``), the benchmarks
  (``provisioner.bench``) or the test harness: checked in a fresh interpreter, so no
  other test's imports can hide a leak.
* ``provisioner.policies.base`` (the policy interface) imports nothing of Redis.
* The package's modules import each other without a cycle (a graph of module-level
  imports, read from the source with :mod:`ast`; imports inside functions are lazy on
  purpose and not edges).
* Every command of the ``provisioner`` CLI is defined in ``provisioner.cli``, and
  ``provisioner.sim`` and ``provisioner.bench`` are library code: no click, no
  module-level import of ``provisioner.cli``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

PKG = Path(__file__).resolve().parent.parent / "provisioner"
FORBIDDEN_IN_SERVICE = ("provisioner.sim", "provisioner.bench", "provisioner.harness")


def _loaded_after(code: str) -> list[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def _leaks(mods: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return [m for m in mods if any(m == f or m.startswith(f + ".") for f in forbidden)]


def test_core_imports_nothing_of_the_emulated_world_or_the_benches() -> None:
    core = sorted(p.stem for p in (PKG / "core").glob("*.py") if p.stem != "__init__")
    code = "\n".join(f"import provisioner.core.{m}" for m in core)
    assert _leaks(_loaded_after(code), FORBIDDEN_IN_SERVICE) == []


def test_the_run_command_imports_nothing_of_the_emulated_world_or_the_benches() -> None:
    code = (
        "from click.testing import CliRunner\n"
        "from provisioner.cli import cli\n"
        "r = CliRunner().invoke(cli, ['run', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
    )
    assert _leaks(_loaded_after(code), FORBIDDEN_IN_SERVICE) == []


def test_the_policy_interface_imports_nothing_of_redis() -> None:
    mods = _loaded_after("import provisioner.policies.base")
    assert [m for m in mods if m == "redis" or m.startswith(("redis.", "provisioner.core"))] == []


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports at module level (not in functions;
    ``if TYPE_CHECKING:`` blocks excluded)."""
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                src = _resolve(mod, node, path.name == "__init__.py")
                targets = [f"{src}.{a.name}" for a in node.names] + [src]
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != mod and t.startswith("provisioner"):
                    edges.add(t)
        graph[mod] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 30
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


@pytest.mark.parametrize(
    ("graph", "cyclic"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"a2"}, "a2": set(), "b": {"b"}}, True),
    ],
)
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], cyclic: bool) -> None:
    assert (find_cycle(graph) is not None) is cyclic


def test_the_old_circle_among_the_policies_is_gone() -> None:
    graph = import_graph()
    assert "provisioner.policies.registry" not in graph["provisioner.policies.predictive"]
    assert "provisioner.core.coordinator" not in graph["provisioner.policies.base"]


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports, at any depth (functions included)."""
    tree = ast.parse(path.read_text(), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("package", ["sim", "bench"])
def test_the_emulated_world_and_the_benches_are_library_code(package: str) -> None:
    """No module of ``sim/`` or ``bench/`` imports click or ``provisioner.cli`` at module
    level: the commands live in ``cli/`` (``python -m provisioner.sim.mock_api`` and
    ``...simulate`` reach theirs through a deferred import only)."""
    graph = import_graph()
    found = []
    for path in sorted((PKG / package).rglob("*.py")):
        mod = _module_name(path)
        found += [f"{mod}: {m}" for m in _imports(path) if m == "click" or m.startswith("click.")]
        found += [f"{mod}: {m}" for m in graph[mod] if m.startswith("provisioner.cli")]
    assert found == []


def _commands(group: click.Group, ctx: click.Context) -> list[click.Command]:
    out: list[click.Command] = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        out.append(cmd)
        if isinstance(cmd, click.Group):
            out += _commands(cmd, click.Context(cmd, parent=ctx, info_name=name))
    return out


def test_every_command_is_defined_in_the_cli_package() -> None:
    from provisioner.cli import cli

    with click.Context(cli, info_name="provisioner") as ctx:
        commands = _commands(cli, ctx)
    assert len(commands) >= 16
    outside = [
        f"{c.name}: {c.callback.__module__}"
        for c in commands
        if c.callback is not None and not c.callback.__module__.startswith("provisioner.cli.")
    ]
    assert outside == []
