"""Packages point one way: vitals/ is the shared vocabulary; ingest/, dashboard/, simulator/ and interop/ never
import each other, and vitals/ imports none of them (an AST scan of every module, including imports inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("ingest", "dashboard", "simulator")
# package -> the top-level packages it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "dashboard": ("ingest", "simulator", "interop", "infusion_monitor", "benchmarks"),
    "ingest": ("dashboard", "simulator", "interop", "infusion_monitor", "benchmarks"),
    "simulator": ("ingest", "dashboard", "interop", "infusion_monitor", "benchmarks"),
    # record-system interoperability (HL7, FHIR) uses the shared vocabulary only
    "interop": ("ingest", "dashboard", "simulator", "infusion_monitor", "benchmarks"),
    "vitals": ("ingest", "dashboard", "simulator", "interop", "infusion_monitor", "benchmarks"),
}


def imported(path: Path) -> list[tuple[int, str]]:
    """Return (line, module) of every absolute import in a module, and of import_module/__import__ with a literal."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module"))
                   or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"))):
            found.append((node.lineno, node.args[0].value))
    return found


def crossings(package: str) -> list[str]:
    """Return every import in ``package`` of a package it must not import, as path:line module."""
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported(path):
            if module.split(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package: str) -> None:
    assert len(list((ROOT / package).rglob("*.py"))) > 3  # the scan really reads the package
    assert crossings(package) == []


def test_the_scan_sees_every_kind_of_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import ingest.alarms\nfrom dashboard.live import LiveState\nfrom . import sibling\n"
                      "def f():\n    from ingest.alarms.rules import load_rules\n"
                      "    importlib.import_module('simulator.cli')\n    __import__('dashboard')\n")
    assert [m for _, m in imported(module)] == ["ingest.alarms", "dashboard.live", "ingest.alarms.rules",
                                                "simulator.cli", "dashboard"]
