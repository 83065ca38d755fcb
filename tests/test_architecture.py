"""Imports run one way, as ARCHITECTURE.md draws them: cli -> zoo; config and
mirror use the fetch core; the core uses checkpoint; nothing imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

SUBSYSTEMS = ("zoo.checkpoint", "zoo.config", "zoo.mirror")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.split(".")[0] in ("zoo", "zoo_cli", "cli")}


def subsystem(module: str) -> str:
    return next((s for s in SUBSYSTEMS if module == s or module.startswith(s + ".")), "core")


LIBRARY = sorted((ROOT / "zoo").rglob("*.py"))


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: module_name(p))
def test_library_imports_run_one_way(path: Path):
    allowed = {
        "core": {"core", "zoo.checkpoint"},
        "zoo.checkpoint": {"zoo.checkpoint", "core"},
        "zoo.config": {"zoo.config", "core", "zoo.checkpoint"},
        "zoo.mirror": {"zoo.mirror", "core", "zoo.checkpoint"},
    }[subsystem(module_name(path))]
    for name in imported(path):
        assert not name.startswith(("zoo_cli", "cli")), f"{module_name(path)} imports the CLI ({name})"
        if name in ("zoo", "zoo.__version__") or path == ROOT / "zoo" / "__init__.py":
            continue  # the package's front door re-exports every subsystem
        assert subsystem(name) in allowed, f"{module_name(path)} imports {name}"


def test_the_checkpoint_reader_needs_only_errors():
    # zoo.checkpoint is used by the core, so it may use only the core's leaf, errors.
    for path in (ROOT / "zoo" / "checkpoint").glob("*.py"):
        core = {name for name in imported(path) if subsystem(name) == "core"}
        assert core <= {"zoo.errors", "zoo.errors.CheckpointError"}, (path.name, core)
