"""Packaging checks that need no Docker engine: compose file, Dockerfile, wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_names_the_stack_with_three_replicas_and_aof() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert set(services) == {"redis", "mock-node-api", "provisioner", "simulator"}
    assert services["provisioner"]["deploy"]["replicas"] == 3
    assert "--appendonly" in services["redis"]["command"]
    assert (
        services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1]
        == "yes"
    )
    env = services["provisioner"]["environment"]
    assert env["PROVISIONER_REDIS_URL"].startswith("redis://redis:")
    assert env["PROVISIONER_NODE_API_URL"] == "http://mock-node-api:8080"
    for name in ("mock-node-api", "provisioner", "simulator"):
        assert services[name]["build"] == "."
    # every command is a real subcommand of the CLI
    from click.testing import CliRunner

    from provisioner.cli.main import cli

    for name in ("mock-node-api", "provisioner", "simulator"):
        sub = services[name]["command"][0]
        result = CliRunner().invoke(cli, [sub, "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_dockerfile_installs_the_package_with_its_scripts() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "COPY lua ./lua" in text
    assert "pip install ." in text
    assert 'ENTRYPOINT ["provisioner"]' in text


def test_every_package_folder_is_listed_in_pyproject() -> None:
    """setuptools gets an explicit package list (lua/ is mapped in as provisioner.lua),
    so a new sub-package must be added to it: an installed copy lacks it otherwise."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "provisioner").rglob("__init__.py")
    }
    assert listed == found | {"provisioner.lua"}


@pytest.mark.slow
def test_built_wheel_carries_the_lua_scripts(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a clean copy: a stale build/ of the checkout must not leak in
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv*", "build", "*.egg-info")
    )
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w",
         str(tmp_path), str(src)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("provisioner-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    lua = {Path(n).name for n in names if n.startswith("provisioner/lua/") and n.endswith(".lua")}
    expected = {p.name for p in (ROOT / "lua").glob("*.lua")}
    assert expected <= lua, expected - lua
    assert any(n.startswith("provisioner/lua/includes/") for n in names)
    assert any(n.startswith("provisioner/sim/data/") for n in names)
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "provisioner").rglob("*.py")}
    assert modules <= set(names), sorted(modules - set(names))
