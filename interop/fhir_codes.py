"""The FHIR code table: which LOINC code, UCUM unit and profile each exported value carries. The one place of it.

interop/fhir.py builds every Observation from this table, and docs/interoperability.md embeds the table made by
``code_table_markdown()``, and the sample Bundle of ``interop.fhir.sample_bundle`` (``python -m interop.fhir_codes
--write-docs``; tests/interop fail when either is stale).
Every code here was checked against published FHIR and LOINC material (docs/interoperability.md says where);
a value without a verified code is not exported as a coded Observation rather than given an invented code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
VITAL_SIGNS_PROFILE = "http://hl7.org/fhir/StructureDefinition/vitalsigns"


@dataclass(frozen=True, slots=True)
class Code:
    """One exported value: its LOINC code(s), its UCUM unit, its Observation category and vital-signs profile."""

    key: str  # the value it carries: a vital of the contract (hr, spo2, ...), a panel, or a record field
    loinc: str
    display: str
    unit: str | None  # UCUM code (also used as the human unit); None for a score without a unit
    category: str  # observation-category code
    profile: str | None = None  # the R4 vital-signs profile it claims (meta.profile), besides vitalsigns
    extra: tuple[tuple[str, str], ...] = ()  # further LOINC codings (code, display) for other receivers
    component_of: str | None = None  # a component of this panel, not an Observation of its own
    source: str = ""  # where the value comes from, for the documentation

    @property
    def codings(self) -> list[dict[str, str]]:
        """Return the FHIR codings of this code (the primary LOINC first)."""
        return [{"system": LOINC, "code": self.loinc, "display": self.display},
                *({"system": LOINC, "code": c, "display": d} for c, d in self.extra)]


def _vs(name: str) -> str:
    return f"http://hl7.org/fhir/StructureDefinition/{name}"


CODES: tuple[Code, ...] = (
    Code("bp", "85354-9", "Blood pressure panel with all children optional", None, "vital-signs", _vs("bp"),
         source="one per cuff reading (a reading carrying sys, dia or map)"),
    Code("sys", "8480-6", "Systolic blood pressure", "mm[Hg]", "vital-signs", component_of="bp",
         source="cuff `sys`"),
    Code("dia", "8462-4", "Diastolic blood pressure", "mm[Hg]", "vital-signs", component_of="bp",
         source="cuff `dia`"),
    Code("map", "8478-0", "Mean blood pressure", "mm[Hg]", "vital-signs", component_of="bp",
         source="cuff `map` (an extra component: the bp profile's slicing is open)"),
    Code("hr", "8867-4", "Heart rate", "/min", "vital-signs", _vs("heartrate"),
         source="`hr`, one Observation per minute (median of the minute's readings)"),
    Code("rr", "9279-1", "Respiratory rate", "/min", "vital-signs", _vs("resprate"),
         source="`rr`, one Observation per minute (median)"),
    Code("spo2", "2708-6", "Oxygen saturation in Arterial blood", "%", "vital-signs", _vs("oxygensat"),
         extra=(("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),),
         source="`spo2`, one Observation per minute (median); 59408-5 is the second coding US Core asks for"),
    Code("weight", "29463-7", "Body weight", "kg", "vital-signs", _vs("bodyweight"),
         source="the session record's patient weight, once, at session start"),
    Code("nrs", "72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported", None, "survey",
         source="each Pain NRS assessment of the session record (valueInteger 0-10)"),
)
BY_KEY = {code.key: code for code in CODES}

# The scales of the session record (vitals/scales.toml) with no LOINC code we could verify: they stay in
# infusion-monitor and are not exported as coded Observations (a receiver could map them with local codes).
UNCODED_SCALES: tuple[str, ...] = ("moaas", "rass", "cadss", "cadss6", "aldrete", "padss")
# The numeric vitals exported as one Observation per minute, and the cuff vitals of the blood-pressure panel.
MINUTE_VITALS: tuple[str, ...] = ("hr", "spo2", "rr")
BP_COMPONENTS: tuple[str, ...] = ("sys", "dia", "map")


def code_table_markdown() -> str:
    """Return the code table in Markdown (docs/interoperability.md embeds it between its markers)."""
    lines = ["| value | LOINC | display | UCUM unit | category | profile (besides vitalsigns) | from |",
             "|---|---|---|---|---|---|---|"]
    for code in CODES:
        loinc = " + ".join(f"`{c}`" for c in (code.loinc, *(c for c, _ in code.extra)))
        profile = f"`{code.profile}`" if code.profile else (f"component of `{code.component_of}`"
                                                              if code.component_of else "-")
        unit = f"`{code.unit}`" if code.unit else "-"
        lines.append(f"| `{code.key}` | {loinc} | {code.display} | {unit} | {code.category} | {profile} | {code.source} |")
    return "\n".join(lines) + "\n"


DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "interoperability.md"
DOC_BEGIN = "<!-- BEGIN FHIR code table, generated by `python -m interop.fhir_codes --write-docs` -->"
DOC_END = "<!-- END FHIR code table -->"


def documented_table(doc: str) -> str:
    """Return the generated code table of the document (between DOC_BEGIN and DOC_END)."""
    return _between(doc, DOC_BEGIN, DOC_END)


SAMPLE_BEGIN = "<!-- BEGIN FHIR sample, generated by `python -m interop.fhir_codes --write-docs` -->"
SAMPLE_END = "<!-- END FHIR sample -->"


def sample_markdown() -> str:
    """Return the documented sample Bundle as a fenced JSON block (interop.fhir.sample_bundle)."""
    from interop.fhir import bundle_json, sample_bundle  # fhir builds on this module: imported when asked

    return f"```json\n{bundle_json(sample_bundle())}```\n"


def _between(doc: str, begin: str, end: str) -> str:
    if begin not in doc or end not in doc:
        raise ValueError(f"docs/interoperability.md has lost the marker {begin if begin not in doc else end}")
    return doc.split(begin, 1)[1].split(end, 1)[0].strip("\n") + "\n"


def documented_sample(doc: str) -> str:
    """Return the generated sample block of the document."""
    return _between(doc, SAMPLE_BEGIN, SAMPLE_END)


def _replace(doc: str, begin: str, end: str, body: str) -> str:
    head, rest = doc.split(begin, 1)
    return f"{head}{begin}\n{body}{end}{rest.split(end, 1)[1]}"


def write_docs(path: Path = DOC_PATH) -> None:
    """Replace the generated code table and sample in ``path`` with the current ones."""
    doc = path.read_text(encoding="utf-8")
    doc = _replace(doc, DOC_BEGIN, DOC_END, code_table_markdown())
    doc = _replace(doc, SAMPLE_BEGIN, SAMPLE_END, sample_markdown())
    path.write_text(doc, encoding="utf-8")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write-docs"]:
        write_docs()
    else:
        print(code_table_markdown(), end="")
