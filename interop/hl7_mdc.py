"""The IEEE 11073-10101 (MDC) codes of the HL7 v2 PCD-01 messages: the one place they live.

docs/interoperability.md's code table is generated from ``MDC_TABLE`` (``python -m interop.hl7_mdc``); a test
keeps the two equal. Outbound messages use the first code of each vital; inbound messages may use any code listed
for it (both NIBP families: 150021/150022/150023 and MDC_PRESS_CUFF_* 150301/150302/150303).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class MdcCode:
    """One metric code and the vital of the contract it carries."""

    vital: str
    code: str
    ref_id: str
    unit_code: str
    unit_ref_id: str
    unit_text: str
    outbound: bool  # the code outbound messages use for this vital
    vmd: int  # OBX-4 device hierarchy: MDS 1, this VMD, channel 1, metric ``metric``
    metric: int
    meaning: str


MDC_TABLE: tuple[MdcCode, ...] = (
    MdcCode("hr", "147842", "MDC_ECG_HEART_RATE", "264864", "MDC_DIM_BEAT_PER_MIN", "bpm", True, 1, 1,
            "heart rate"),
    MdcCode("hr", "149530", "MDC_PULS_OXIM_PULS_RATE", "264864", "MDC_DIM_BEAT_PER_MIN", "bpm", False, 2, 2,
            "pulse rate from the oximeter (inbound only)"),
    MdcCode("spo2", "150456", "MDC_PULS_OXIM_SAT_O2", "262688", "MDC_DIM_PERCENT", "%", True, 2, 1, "SpO2"),
    MdcCode("rr", "151562", "MDC_RESP_RATE", "264928", "MDC_DIM_RESP_PER_MIN", "breaths/min", True, 3, 1,
            "respiration rate"),
    MdcCode("sys", "150021", "MDC_PRESS_BLD_NONINV_SYS", "266016", "MDC_DIM_MMHG", "mmHg", True, 4, 1,
            "NIBP systolic"),
    MdcCode("dia", "150022", "MDC_PRESS_BLD_NONINV_DIA", "266016", "MDC_DIM_MMHG", "mmHg", True, 4, 2,
            "NIBP diastolic"),
    MdcCode("map", "150023", "MDC_PRESS_BLD_NONINV_MEAN", "266016", "MDC_DIM_MMHG", "mmHg", True, 4, 3,
            "NIBP mean"),
    MdcCode("sys", "150301", "MDC_PRESS_CUFF_SYS", "266016", "MDC_DIM_MMHG", "mmHg", False, 4, 1,
            "cuff systolic (inbound only)"),
    MdcCode("dia", "150302", "MDC_PRESS_CUFF_DIA", "266016", "MDC_DIM_MMHG", "mmHg", False, 4, 2,
            "cuff diastolic (inbound only)"),
    MdcCode("map", "150303", "MDC_PRESS_CUFF_MEAN", "266016", "MDC_DIM_MMHG", "mmHg", False, 4, 3,
            "cuff mean (inbound only)"),
)

# The device-hierarchy rows of a message (OBX-2 empty, OBX-11 "X"): the MDS (OBX-4 1.0.0.0) and each VMD (1.n.0.0).
# Codes from IHE PCD example messages; 69722 is NOM_DEV_ANALY_RESP_RATE_VMD (4186) in partition 1 (+65536).
MDS: tuple[str, str] = ("69965", "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS")
VMDS: Mapping[int, tuple[str, str]] = MappingProxyType({
    1: ("69798", "MDC_DEV_ECG_VMD"),
    2: ("69642", "MDC_DEV_ANALY_SAT_O2_VMD"),
    3: ("69722", "MDC_DEV_ANALY_RESP_RATE_VMD"),
    4: ("70686", "MDC_DEV_PRESS_BLD_NONINV_VMD"),
})

OUTBOUND: Mapping[str, MdcCode] = MappingProxyType({c.vital: c for c in MDC_TABLE if c.outbound})
INBOUND: Mapping[str, MdcCode] = MappingProxyType({c.code: c for c in MDC_TABLE})


def code_table_markdown() -> str:
    """Return the code table in Markdown (docs/interoperability.md embeds it)."""
    lines = ["| vital | OBX-3 code | reference id | unit (OBX-6) | OBX-4 | direction | meaning |",
             "|---|---|---|---|---|---|---|"]
    for c in MDC_TABLE:
        direction = "out and in" if c.outbound else "in"
        lines.append(f"| `{c.vital}` | {c.code} | `{c.ref_id}` | {c.unit_code} `{c.unit_ref_id}` ({c.unit_text}) | "
                     f"1.{c.vmd}.1.{c.metric} | {direction} | {c.meaning} |")
    lines += ["", "| device-hierarchy row | OBX-3 code | reference id | OBX-4 |", "|---|---|---|---|",
              f"| MDS (the monitor) | {MDS[0]} | `{MDS[1]}` | 1.0.0.0 |"]
    lines += [f"| VMD {n} | {code} | `{ref}` | 1.{n}.0.0 |" for n, (code, ref) in VMDS.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(code_table_markdown(), end="")
