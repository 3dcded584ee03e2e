"""The tree's layers, enforced: no module imports from a layer above its own.

    cli  ->  runtime/api (composition)  ->  agents, engine, flows  ->  reporting, synth  ->  decision, tools  ->  utils

A module may import its own layer and any layer below. Agents and flows are one
layer: a flow runs agents, and the flow agent validates flows. The pure decision
domain (``cvm.decision``) sits beside the tools: both paths' rules live there. The package root
``cvm/__init__.py`` only re-exports the composition layer lazily.

Known debts are listed in ``KNOWN_UPWARD`` with the issue that removes them; the
list may only shrink (an entry that no longer happens fails the test).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

RANK = {"utils": 0, "tools": 1, "decision": 1, "reporting": 2, "synth": 2, "agents": 3, "engine": 3, "flows": 3, "runtime": 5, "api": 5, "cli": 6}

# Modules that sit in another layer than their package, and why.
MODULE_LAYER = {
    "cvm.flows.testing": "runtime",  # the FlowTestCase harness builds a real runtime, as a composition root does
    "cvm.flows.api": "runtime",  # the flows document's FlowEngine runs flows on a real runtime, as a composition root does
}

KNOWN_UPWARD: set[tuple[str, str]] = set()
"""(module, import) pairs that break the layers and are tolerated until the issue that removes them lands."""


def layer_of(module: str) -> str:
    """``cvm.agents.journey`` -> ``agents``; ``cvm.runtime`` -> ``runtime``."""
    if module in MODULE_LAYER:
        return MODULE_LAYER[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "api"


def module_name(path: Path) -> str:
    relative = path.relative_to(SRC).with_suffix("")
    parts = [p for p in relative.parts if p != "__init__"]
    return ".".join(["cvm", *parts])


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every ``cvm.*`` module the file imports, anywhere in it (lazy imports count too), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cvm"):
            if node.module == "cvm":
                found += [(node.lineno, f"cvm.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("cvm.")]
    return found


MODULES = sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


def test_every_module_belongs_to_a_known_layer() -> None:
    unknown = sorted({layer_of(module_name(p)) for p in MODULES} - set(RANK))
    assert unknown == [], f"add these packages to RANK in {__file__}: {unknown}"


def upward_imports(path: Path) -> list[tuple[int, str]]:
    mine = layer_of(module_name(path))
    return [
        (line, target) for line, target in imported_modules(path)
        if layer_of(target) in RANK and RANK[layer_of(target)] > RANK[mine]
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_import_runs_up_a_layer(path: Path) -> None:
    me = module_name(path)
    upward = [f"line {line}: {target}" for line, target in upward_imports(path) if (me, target) not in KNOWN_UPWARD]
    assert upward == [], f"{path.relative_to(SRC)} ({layer_of(me)}) imports from a higher layer: {upward}"


def test_known_debts_still_exist() -> None:
    """A paid debt leaves the list, so it cannot come back unnoticed."""
    happening = {(module_name(p), target) for p in MODULES for _, target in upward_imports(p)}
    assert sorted(KNOWN_UPWARD - happening) == []


def test_the_clis_do_not_import_each_other_in_a_cycle() -> None:
    cli = {module_name(p): {t for _, t in imported_modules(p) if t.startswith("cvm.cli.")} for p in (SRC / "cli").glob("*.py")}
    cycles = sorted(f"{a} <-> {b}" for a, targets in cli.items() for b in targets if a < b and a in cli.get(b, set()))
    assert cycles == []


def test_every_package_is_installed() -> None:
    """pyproject's explicit package list names every folder of modules under src (a new one left out breaks a wheel install)."""
    import tomllib

    listed = set(tomllib.loads((SRC.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    on_disk = {"cvm", *(f"cvm.{p.parent.relative_to(SRC).as_posix().replace('/', '.')}" for p in SRC.rglob("*.py") if p.parent != SRC)}
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
