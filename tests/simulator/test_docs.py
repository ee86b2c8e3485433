"""docs/simulator.md names every parameter, event kind, shipped scenario and command-line flag."""

from __future__ import annotations

import argparse
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from simulator import cli, record_cli, replay_cli
from simulator.scenario import COMMON_EVENT_KEYS, EVENT_KINDS, builtin_names

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "simulator.md").read_text(encoding="utf-8")


def test_every_default_parameter_is_in_the_reference_table() -> None:
    defaults = tomllib.loads((resources.files("simulator") / "scenarios" / "defaults.toml").read_text())
    names = [f"{table}.{key}" for table, values in defaults.items() if isinstance(values, dict) for key in values]
    assert len(names) > 50
    missing = [name for name in names if f"`{name}`" not in DOC]
    assert not missing, f"docs/simulator.md lacks {missing}"


def test_every_event_kind_with_its_parameters_and_every_scenario_is_documented() -> None:
    for kind, params in EVENT_KINDS.items():
        row = next((line for line in DOC.splitlines() if line.startswith(f"| `{kind}` |")), None)
        assert row is not None, kind
        assert all(f"`{p}`" in row for p in params), (kind, row)
    assert all(f"`{key}`" in DOC for key in COMMON_EVENT_KEYS if key != "kind")
    assert all(f"| `{name}` |" in DOC for name in builtin_names())


@pytest.mark.parametrize("module", [cli, record_cli, replay_cli])
def test_every_command_line_flag_is_documented(module) -> None:  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    flags = [opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")]
    flags.remove("--help")
    missing = [flag for flag in flags if flag not in DOC]
    assert not missing, f"docs/simulator.md lacks {missing}"
