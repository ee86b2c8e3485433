"""HL7 v2 messages without servers (except one MLLP receiver for ``export hl7``): the profile, validation by hl7apy,
reading back by python-hl7, the patient identity, times, both NIBP families in, and the generated doc."""

from __future__ import annotations

import io
from pathlib import Path

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from infusion_monitor.cli import build_parser
from interop import hl7_docs
from interop.hl7 import (
    Hl7Refusal,
    PatientLookup,
    hl7_ts,
    parse_hl7_ts,
    read_oru,
    reading_objects,
    session_messages,
)
from interop.hl7_mdc import INBOUND, MDC_TABLE, OUTBOUND
from interop.hl7_send_cli import export
from tests.interop.helpers import Receiver
from tests.interop.samples import GATEWAY_150301, MONITOR_150021
from tests.servers import free_port
from vitals.reading import Reading
from vitals.records import Session
from vitals.settings import FixedSettings
from vitals.store.sqlite import SQLiteStore

T0 = 1795597200000  # 2026-11-25 09:00:00Z
SESSION = Session("north", "c-07", "S-1", "ended", T0, T0 + 3 * 60_000, drug="ketamine", patient_ref="P-0042")


def _readings() -> list[Reading]:
    out = [Reading("north", "c-07", T0 + i * 5000, hr=60 + i % 7, spo2=95 + i % 4, rr=10 + i % 3) for i in range(36)]
    out += [Reading("north", "c-07", T0 + m * 60_000 + 20_000, sys=130 - m, dia=85, map=100) for m in range(3)]
    return out


def test_the_doc_is_generated_from_the_code_table() -> None:
    doc = hl7_docs.DOC.read_text()
    for block in hl7_docs.BLOCKS:
        assert hl7_docs.documented(doc, block) == hl7_docs.generated(block), \
            "stale: run python -m interop.hl7_docs --write-docs"
    assert "# Interoperability" in doc and "## FHIR R4" in doc


def test_the_code_table_has_the_verified_codes() -> None:
    assert {v: (c.code, c.unit_code) for v, c in OUTBOUND.items()} == {
        "hr": ("147842", "264864"), "spo2": ("150456", "262688"), "rr": ("151562", "264928"),
        "sys": ("150021", "266016"), "dia": ("150022", "266016"), "map": ("150023", "266016")}
    assert {code: INBOUND[code].vital for code in ("149530", "150301", "150302", "150303")} == {
        "149530": "hr", "150301": "sys", "150302": "dia", "150303": "map"}
    assert len({c.code for c in MDC_TABLE}) == len(MDC_TABLE)


def test_a_session_is_one_message_per_cuff_cycle_and_per_minute_valid_for_hl7apy_and_python_hl7() -> None:
    messages = session_messages(SESSION, _readings(), 60_000)
    assert [m.key for m in messages] == ["cuff.1795597220000", "num.1795597200000", "cuff.1795597280000",
                                         "num.1795597260000", "cuff.1795597340000", "num.1795597320000"]
    for message in messages:
        strict = parse_message(message.text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        assert strict.validate()
        parsed = hl7.parse(message.text)
        assert str(parsed.segment("MSH")[21]).startswith("IHE_PCD_001")
        metric_rows = [obx for obx in parsed.segments("OBX") if str(obx[2]) == "NM"]
        codes = {str(obx[3][0][0]): (str(obx[6][0][0]), str(obx[4]), str(obx[18])) for obx in metric_rows}
        wanted = ("sys", "dia", "map") if message.key.startswith("cuff") else ("hr", "spo2", "rr")
        assert codes == {OUTBOUND[v].code: (OUTBOUND[v].unit_code, f"1.{OUTBOUND[v].vmd}.1.{OUTBOUND[v].metric}",
                                            "INFUSION-MONITOR") for v in wanted}
    first_minute = hl7.parse(messages[1].text)
    hr_row = next(obx for obx in first_minute.segments("OBX") if str(obx[3][0][0]) == "147842")
    # the minute's hr: 60..66, 60..64 -> median 62.5 (the mean would be 62.58)
    assert float(str(hr_row[5])) == 62.5 and str(hr_row[14]) == hl7_ts(T0)


def test_only_the_pseudonymous_ref_leaves_unless_a_lookup_maps_it(tmp_path: Path) -> None:
    [message, *_] = session_messages(SESSION, _readings(), 60_000)
    pid = hl7.parse(message.text).segment("PID")
    assert str(pid[3]) == "P-0042^^^INFUSION-MONITOR^PI" and str(pid[5]) == "^^^^^^S" and len(pid) == 6
    lookup_file = tmp_path / "lookup.toml"
    lookup_file.write_text('authority = "HOSP"\n[refs]\n"P-0042" = "4711"\n')
    [mapped, *_] = session_messages(SESSION, _readings(), 60_000, lookup=PatientLookup.load(lookup_file))
    assert str(hl7.parse(mapped.text).segment("PID")[3]) == "P-0042^^^INFUSION-MONITOR^PI~4711^^^HOSP^MR"
    lookup_file.write_text('authority = "HOSP"\nnames = {}\n')
    with pytest.raises(ValueError, match="nothing else"):
        PatientLookup.load(lookup_file)
    anonymous = Session("north", "c-07", "S-2", "active", T0)
    [bare, *_] = session_messages(anonymous, _readings(), 60_000)
    assert str(hl7.parse(bare.text).segment("PID")[3]) == ""


@pytest.mark.parametrize(("text", "ms"), [
    ("20261125090000+0000", T0), ("20261125100000.250+0100", T0 + 250), ("202611250400-0500", T0),
])
def test_hl7_times_need_their_offset(text: str, ms: int) -> None:
    assert parse_hl7_ts(text) == ms
    assert parse_hl7_ts(hl7_ts(ms)) == ms


@pytest.mark.parametrize("bad", ["20261125090000", "2026112509", "20261345090000+0000", "20261125090000+01"])
def test_a_time_without_offset_or_malformed_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_hl7_ts(bad)


def test_both_nibp_families_read_as_the_same_vitals() -> None:
    [cuff, numerics] = reading_objects(read_oru(MONITOR_150021))
    assert set(cuff) == {"ts", "sys", "dia", "map"} and set(numerics) == {"ts", "hr", "spo2", "rr"}
    [reading] = reading_objects(read_oru(GATEWAY_150301))
    assert reading == {"ts": 1795598160000, "hr": 66.0, "sys": 141.0, "dia": 92.0, "map": 108.0}
    with pytest.raises(Hl7Refusal) as refused:
        read_oru(MONITOR_150021.replace("ORU^R01^ORU_R01", "ORU^R30"))
    assert refused.value.code == "not_oru_r01" and refused.value.ack_code == "AR"


def test_export_hl7_sends_a_stored_session_to_an_mllp_receiver(tmp_path: Path) -> None:
    db = tmp_path / "vitals.db"
    store = SQLiteStore(db)
    store.write_sessions([SESSION])
    store.write_readings(_readings())
    store.close()
    receiver = Receiver(free_port())
    receiver.start()
    try:
        args = build_parser().parse_args(["export", "hl7", "--site", "north", "--chair", "c-07", "--last",
                                          "--mllp", f"127.0.0.1:{receiver.port}", "--store-url", f"sqlite:///{db}"])
        assert args.hl7_mllp == f"127.0.0.1:{receiver.port}"
        settings = FixedSettings(store_url=f"sqlite:///{db}", hl7_mllp=args.hl7_mllp)
        out = io.StringIO()
        assert export(settings, "north", "c-07", None, out) == 0
        assert "6 of 6 messages acknowledged AA" in out.getvalue()
        assert [m.split("\r")[0].split("|")[9] for m in receiver.received()] == \
            [f"north.c-07.{m.key}" for m in session_messages(SESSION, _readings(), 60_000)]
        receiver.answer = "AR"
        assert export(settings, "north", "c-07", "S-1", out) == 1
        with pytest.raises(LookupError, match="S-9"):
            export(settings, "north", "c-07", "S-9", out)
    finally:
        receiver.stop()


@pytest.mark.parametrize(("payload", "why"), [
    ('{"target": "hl7", "state": "broken", "ts": 1}', "state"),
    ('{"target": "hl7", "state": "ok"}', "ts"),
    ('{"state": "ok", "ts": 1795597200000}', "target"),
    ('{"target": "hl7", "state": "ok", "ts": 1795597200000, "pending": -1}', "pending"),
    ("[]", "object"),
])
def test_an_export_status_that_breaks_the_contract_is_refused(payload: str, why: str) -> None:
    from vitals.records import ExportStatus, RecordError

    with pytest.raises(RecordError, match=why):
        ExportStatus.from_payload(payload)
    good = ExportStatus.from_payload('{"target": "hl7", "state": "failing", "ts": 1795597200000, "reason": "x", "pending": 2}')
    assert (good.state, good.pending, good.reason) == ("failing", 2, "x")
