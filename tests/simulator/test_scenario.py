"""Scenario files: every shipped one loads, overrides apply, and a bad file is refused with a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.scenario import EVENT_KINDS, ScenarioError, builtin_names, load_scenario, parse_override
from simulator.stream import generate
from tests.simulator.helpers import START_MS, readings_by_chair


def test_defaults_carry_the_issue_numbers() -> None:
    p = load_scenario("normal").params
    assert p["timing"] == {"vitals_interval_s": 1, "cuff_interval_min": 10}
    assert p["drug"]["dose_mg_per_kg"] == 0.5 and p["drug"]["infusion_min"] == 40
    b = p["baseline"]
    assert (b["hr"], b["spo2"], b["rr"], b["sys"]) == ([60, 95], [95, 99], [12, 18], [105, 145])
    assert 105 <= b["hypertensive_sys"][0] <= b["hypertensive_sys"][1] <= 145
    assert 30 <= p["response"]["peak_min"] <= 40 and 7 <= p["response"]["sys_rise_mean"] <= 16
    desat = EVENT_KINDS["desaturation"]
    assert desat["nadir"] == [85, 88] and desat["duration_s"] == [30, 90]


def test_scenarios_are_toml_files_shipped_inside_the_package() -> None:
    folder = Path(__import__("simulator").__file__).parent / "scenarios"
    assert {p.stem for p in folder.glob("*.toml")} == {*builtin_names(), "defaults"}
    assert all(load_scenario(name).description for name in builtin_names())


def test_overrides_change_one_parameter_and_are_checked_like_files() -> None:
    sc = load_scenario("normal", {"timing.cuff_interval_min": 15, "baseline.hr": 70})
    assert sc.param("timing", "cuff_interval_min") == 15
    rows = readings_by_chair(list(generate(sc, site="s", chairs=1, seed=1, start_ms=START_MS)))["01"]
    assert [(r["ts"] - START_MS) // 60_000 for r in rows if "sys" in r] == [0, 15, 30, 45, 60, 75]
    with pytest.raises(ScenarioError, match=r"timing\.cuff_interval_min must be a number, not 'ten'"):
        load_scenario("normal", {"timing.cuff_interval_min": "ten"})
    with pytest.raises(ScenarioError, match=r"unknown parameter timing\.cuff"):
        load_scenario("normal", {"timing.cuff": 5})
    assert parse_override("baseline.hr=[70, 80]") == ("baseline.hr", [70, 80])
    assert parse_override("drug.name=esketamine") == ("drug.name", "esketamine")
    assert parse_override("clinic.phase_spread=false") == ("clinic.phase_spread", False)
    with pytest.raises(ValueError, match=r"table\.key=value"):
        parse_override("cuff_interval_min=5")


def test_a_cuff_interval_of_zero_means_only_the_reading_at_session_start() -> None:
    sc = load_scenario("normal", {"timing.cuff_interval_min": 0})
    rows = readings_by_chair(list(generate(sc, site="s", chairs=1, seed=1, start_ms=START_MS, duration_s=1800)))
    assert [r["ts"] for r in rows["01"] if "sys" in r] == [START_MS]


BAD_FILES = [
    ("[timing\ncuff_interval_min = 5\n", r"bad\.toml is not valid TOML: .*line 1"),
    ("[timing]\ncuff_interval = 5\n", r"bad\.toml: unknown parameter timing\.cuff_interval$"),
    ("[timming]\ncuff_interval_min = 5\n", r"bad\.toml: unknown key 'timming' \(known: .*timing"),
    ("colour = 'red'\n", r"unknown key 'colour'"),
    ("[timing]\ncuff_interval_min = 'ten'\n", r"timing\.cuff_interval_min must be a number, not 'ten'"),
    ("[timing]\nvitals_interval_s = 0\n", r"timing\.vitals_interval_s must be above 0"),
    ("[baseline]\nhr = [95, 60]\n", r"baseline\.hr must be a number or a range \[lo, hi\] with lo <= hi"),
    ("[baseline]\nhr = [60, 75, 95]\n", r"baseline\.hr must be a number or a range"),
    ("[bounds]\nhr = 80\n", r"bounds\.hr must be a range \[lo, hi\]"),
    ("[delivery]\nlate_fraction = 1.5\n", r"delivery\.late_fraction is a fraction from 0 to 1"),
    ("[response]\nsys_rise_mean = -3\n", r"response\.sys_rise_mean cannot be negative"),
    ("[clinic]\nphase_spread = 1\n", r"clinic\.phase_spread must be true or false"),
    ("[clinic]\nsessions_per_chair = 2.5\n", r"clinic\.sessions_per_chair must be a whole number"),
    ("duration = 'all day'\n", r"invalid duration 'all day'"),
    ("chairs = 0\n", r"chairs must be a whole number from 1"),
    ("[[events]]\nkind = 'seizure'\n", r"event kind 'seizure' is not one of desaturation, "),
    ("[[events]]\nkind = 'desaturation'\nnadir_pct = 80\n", r"unknown parameter 'nadir_pct' of a desaturation event"),
    ("[[events]]\nkind = 'desaturation'\nchairs = [0]\n", r"desaturation\.chairs must be \"all\" or a list"),
    ("[[events]]\nkind = 'desaturation'\nnadir = 'low'\n", r"desaturation\.nadir must be a number or a range"),
    ("[[events]]\nkind = 'tachycardia'\nprobability = 2\n", r"tachycardia\.probability is a fraction"),
    ("events = 3\n", r"events must be written as \[\[events\]\] tables"),
    ("[[mix]]\nchairs = [1]\n", r"a \[\[mix\]\] needs scenario = \"name\""),
    ("[[mix]]\nscenario = 'bradycardia'\nchair = [1]\n", r"unknown key 'chair' in a \[\[mix\]\]"),
    ("include = ['no-such-scenario']\n", r"unknown scenario 'no-such-scenario': use a file path or one of"),
    ("include = ['bad.toml']\n", r"bad\.toml includes itself"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES, ids=[m[:40] for _, m in BAD_FILES])
def test_a_bad_scenario_file_is_refused_with_a_message_naming_the_file_and_the_fault(tmp_path: Path, text: str,
                                                                                    message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message) as caught:
        load_scenario(str(path))
    assert "bad.toml" in str(caught.value) or "unknown scenario" in str(caught.value)


def test_an_included_file_is_found_next_to_the_including_one_and_its_errors_name_it(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text('include = ["desaturation"]\n[timing]\ncuff_interval_min = 5\n')
    (tmp_path / "top.toml").write_text('include = ["base"]\nduration = "30m"\n')
    sc = load_scenario(str(tmp_path / "top.toml"))
    assert sc.name == "top" and sc.duration_s == 1800 and sc.param("timing", "cuff_interval_min") == 5
    assert [e["kind"] for e in sc.events] == ["desaturation"]
    (tmp_path / "base.toml").write_text("[noise]\nhr_sd = 'x'\n")
    with pytest.raises(ScenarioError, match=r"base\.toml: noise\.hr_sd must be a number"):
        load_scenario(str(tmp_path / "top.toml"))


def test_missing_files_and_unknown_names_say_what_exists() -> None:
    with pytest.raises(ScenarioError, match=r"scenario file /nonexistent/x\.toml not found"):
        load_scenario("/nonexistent/x.toml")
    with pytest.raises(ScenarioError, match="clinic-day"):
        load_scenario("clinicday")
    with pytest.raises(ScenarioError):
        load_scenario("defaults")  # the base of every scenario, not one itself


def test_list_scenarios_prints_every_shipped_one_with_its_description(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from simulator import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["--list-scenarios"])) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == builtin_names()
    assert any("SpO2 down to 85-88 % for 30-90 s" in line for line in lines)
