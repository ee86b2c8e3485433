"""The session report: one document per infusion session, as PDF (ReportLab) or HTML (docs/dashboard.md).

``collect`` reads everything a report holds from a store (the session, its readings and cuff readings, alarm
events with who acknowledged them, the audit trail, and the nurse's record: infusion events, assessments and
the discharge); ``render_pdf`` and ``render_html`` lay the same ``SessionReport`` out. The dashboard serves it at
``/report/{site}/{chair}/{session}.pdf`` and ``infusion-monitor report`` writes it to a file.

Only the pseudonymous patient reference is printed: the store holds no name, and none is ever asked for.
"""

from __future__ import annotations

import html as html_escape
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vitals.care import INFUSION_EVENTS, CareRecord
from vitals.reading import Reading
from vitals.records import AlarmEvent, AuditRecord, Session
from vitals.scales import SCALES
from vitals.store import Series, Store

# Readings are read from this long before the session start (the baseline) to this long after its end (recovery).
BEFORE_MS = 10 * 60_000
AFTER_MS = 0
# A session still running is reported up to now; one with no end is cut after this long.
MAX_SPAN_MS = 12 * 3600_000
CHART_POINTS = 400
DISCLAIMER = ("Produced by infusion-monitor, a secondary display and alerting aid, not a certified medical device. "
              "Times are UTC. The patient is identified only by a pseudonymous reference.")


class ReportError(LookupError):
    """No session matches what was asked for; the message says what was looked for."""


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the report's timeline: when, what kind, what, who."""

    ts: int
    kind: str
    text: str
    user: str = ""


@dataclass(slots=True)
class SessionReport:
    """Everything one session's report holds, read from the store."""

    site: str
    chair: str
    session: Session
    generated_at: int
    start_ms: int
    end_ms: int
    series: Series
    cuff: list[Reading]
    alarms: list[AlarmEvent]
    audit: list[AuditRecord]
    facts: list[tuple[str, str]] = field(default_factory=list)  # patient and treatment, label -> value
    timeline: list[Row] = field(default_factory=list)
    assessments: list[tuple[int, str, str, str, str]] = field(default_factory=list)  # ts, scale, total, items, user
    discharge: list[tuple[str, str]] = field(default_factory=list)  # label -> value
    markers: list[tuple[int, str]] = field(default_factory=list)  # chart markers: ts, short label


def utc(ts_ms: int | None, *, date: bool = False) -> str:
    """Return a UTC time for the report (``HH:MM:SS``, or with the date)."""
    if ts_ms is None:
        return "-"
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if date else "%H:%M:%S")


def _num(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    text = f"{value:.{digits}f}" if digits else f"{value:g}"
    return f"{text} {unit}".strip()


def pick_session(sessions: Sequence[Session], session_id: str | None) -> Session:
    """Return the session with ``session_id``, or the newest one when it is None; ReportError when none."""
    if session_id is None:
        if not sessions:
            raise ReportError("no session stored for this chair")
        return max(sessions, key=lambda s: s.started_at)
    found = [s for s in sessions if s.session_id == session_id]
    if not found:
        raise ReportError(f"no session {session_id!r} stored for this chair")
    return max(found, key=lambda s: s.started_at)


def collect(store: Store, site: str, chair: str, session_id: str | None = None, *, now_ms: int | None = None) -> SessionReport:
    """Read one session's report from a store (``session_id`` None: the chair's newest session)."""
    now = now_ms if now_ms is not None else datetime.now(UTC).timestamp() * 1000
    now = int(now)
    session = pick_session(store.sessions(site, chair), session_id)
    start = session.started_at - BEFORE_MS
    end = (session.ended_at + AFTER_MS) if session.ended_at else min(now, session.started_at + MAX_SPAN_MS)
    end = max(end, session.started_at + 1)
    series = store.series(site, chair, start, end, max_points=CHART_POINTS)
    if session.ended_at is None:  # still running (or its end never arrived): report up to its last reading
        heard = [ts for i, ts in enumerate(series.times) if any(v[i] is not None for v in series.mean.values())]
        if heard and heard[-1] + 60_000 < end:
            end = max(heard[-1] + 60_000, session.started_at + 1)
            series = store.series(site, chair, start, end, max_points=CHART_POINTS)
    cuff = [r for r in store.readings(site, chair, start, end) if r.has_cuff]
    alarms = store.alarm_events(site, chair, start, end)
    audit = [a for a in store.audit(site, start, end) if a.chair in (None, chair)]
    report = SessionReport(site, chair, session, now, start, end, series, cuff, alarms, audit)
    report.facts = session_facts(session)
    report.timeline = base_timeline(report)
    add_care_records(report, store.care_records(site, chair, session.session_id))
    report.timeline.sort(key=lambda row: row.ts)
    return report


def session_facts(session: Session) -> list[tuple[str, str]]:
    """Return the patient and treatment facts a session record carries."""
    facts = [("Patient ref (pseudonymous)", session.patient_ref or "-"), ("Session", session.session_id),
             ("Weight", _num(session.weight_kg, "kg")), ("Drug", session.drug or "-"),
             ("Dose", _num(session.dose_mg_per_kg, "mg/kg")), ("Total dose", _num(session.total_mg, "mg")),
             ("Planned duration", _num(session.duration_min, "min")),
             ("Baseline BP", baseline_text(session)),
             ("Started", utc(session.started_at, date=True)),
             ("Ended", utc(session.ended_at, date=True) if session.ended_at else "still running"),
             ("Started by", session.started_by or "device")]
    return facts


def baseline_text(session: Session) -> str:
    """Return the pre-infusion baseline BP and where it came from."""
    if session.baseline_sys is None:
        return "-"
    dia = f"/{session.baseline_dia:g}" if session.baseline_dia is not None else ""
    source = {"cuff": " (last cuff reading)", "entered": " (entered)"}.get(session.baseline_source or "", "")
    return f"{session.baseline_sys:g}{dia} mmHg{source}"


def short_label(record: CareRecord) -> str:
    """Return a record's label for a chart marker: a few words."""
    data = record.data
    if record.type == "assessment":
        scale = SCALES.get(str(data.get("scale")))
        return f"{scale.name if scale else data.get('scale')} {data.get('total')}"
    if record.type in ("infusion_start", "rate_change") and data.get("rate") is not None:
        return f"{'start' if record.type == 'infusion_start' else 'rate'} {data['rate']:g}"
    if record.type == "adverse_event":
        return f"AE {str(data.get('kind', '')).replace('_', ' ')}"
    return record.type.replace("infusion_", "").replace("_", " ")


def add_care_records(report: SessionReport, records: Sequence[CareRecord]) -> None:
    """Add the nurse's record to a report: events on the timeline and chart, assessments, the discharge."""
    for record in sorted(records, key=lambda r: r.ts):
        data = record.data
        if record.type == "assessment":
            scale = SCALES.get(str(data.get("scale")))
            name = scale.name if scale else str(data.get("scale"))
            items = data.get("items") or {}
            labels = {i.id: i.label for i in scale.items} if scale else {}
            shown = "" if scale is not None and scale.single else ", ".join(
                f"{labels.get(k, k)} {v}" for k, v in items.items())
            threshold = f" (discharge at {scale.discharge_min})" if scale and scale.discharge_min else ""
            report.assessments.append((record.ts, name, f"{data.get('total')}{threshold}", shown, record.author))
            report.timeline.append(Row(record.ts, "assessment", f"{name} total {data.get('total')}", record.author))
            report.markers.append((record.ts, short_label(record)))
        elif record.type == "discharge":
            report.timeline.append(Row(record.ts, "discharge", record.summary(), record.author))
            report.markers.append((record.ts, "discharge"))
            report.discharge = [("Discharged", utc(record.ts, date=True)), ("By", record.author),
                                ("Accepted on", "override" if data.get("override_reason") or
                                 data.get("accepted") == "override" else "criteria met")]
            if data.get("override_reason"):
                report.discharge.append(("Override reason", str(data["override_reason"])))
            for criterion in data.get("criteria") or []:
                if isinstance(criterion, dict):
                    report.discharge.append((f"Criterion: {criterion.get('id', '')}",
                                             f"{'met' if criterion.get('met') else 'NOT met'}"
                                             + (f" - {criterion['detail']}" if criterion.get("detail") else "")))
        else:
            text = record.summary().replace("_", " ")
            for key in ("reason", "text"):
                if data.get(key):
                    text += f": {data[key]}"
            kind = "infusion" if record.type in INFUSION_EVENTS else record.type.replace("_", " ")
            report.timeline.append(Row(record.ts, kind, text, record.author))
            if record.type != "note":
                report.markers.append((record.ts, short_label(record)))


def base_timeline(report: SessionReport) -> list[Row]:
    """Return the timeline rows the store has for any session: start, end, alarms, and audited actions."""
    rows = [Row(report.session.started_at, "session", "session started")]
    if report.session.ended_at:
        rows.append(Row(report.session.ended_at, "session", "session ended"))
    for event in report.alarms:
        if event.event in ("raised", "acknowledged", "escalated", "upgraded"):
            rows.append(Row(event.ts, "alarm", f"{event.priority} {event.vital} alarm {event.event}"
                            + (f": {event.text}" if event.text and event.event != "acknowledged" else ""),
                            event.user or ""))
    return rows


def alarm_rows(report: SessionReport) -> list[list[str]]:
    """Return one row per alarm: raised, priority, what, cleared, acknowledged by whom and when."""
    by_id: dict[str, dict[str, Any]] = {}
    for event in sorted(report.alarms, key=lambda e: e.ts):
        item = by_id.setdefault(event.alarm_id, {"raised": event.ts, "priority": event.priority, "vital": event.vital,
                                                 "text": event.text or "", "ack": "", "cleared": ""})
        if event.event in ("raised", "upgraded"):
            item["priority"] = event.priority
            item["text"] = event.text or item["text"]
        elif event.event == "acknowledged":
            item["ack"] = f"{event.user or '?'} at {utc(event.ts)}"
        elif event.event == "cleared":
            item["cleared"] = utc(event.ts)
    return [[utc(i["raised"]), i["priority"], i["vital"], i["text"], i["cleared"] or "-", i["ack"] or "not acknowledged"]
            for i in by_id.values()]


def cuff_rows(report: SessionReport) -> list[list[str]]:
    """Return the cuff readings table rows."""
    return [[utc(r.ts_ms), _num(r.sys), _num(r.dia), _num(r.map), _num(r.hr), _num(r.spo2)] for r in report.cuff]


CUFF_HEAD = ["time", "systolic mmHg", "diastolic mmHg", "MAP mmHg", "HR /min", "SpO2 %"]
ALARM_HEAD = ["raised", "priority", "vital", "alarm", "cleared", "acknowledged by"]
TIMELINE_HEAD = ["time", "kind", "what", "by"]
ASSESS_HEAD = ["time", "scale", "total", "items", "by"]


# --- the chart (a ReportLab drawing; the HTML gets the same drawing as SVG) ----------------------------------

CHART_COLOURS = {"hr": "#1b8a3a", "spo2": "#1f5fbf", "sys": "#b0124a", "dia": "#d9678f", "rr": "#555555"}


def chart(report: SessionReport, width: float = 500, height: float = 260) -> Any:
    """Return the vitals trend as a ReportLab Drawing: HR, SpO2, cuff BP, with the timeline's markers."""
    from reportlab.graphics.shapes import Circle, Drawing, Line, PolyLine, String
    from reportlab.lib import colors

    drawing = Drawing(width, height)
    left, right, bottom, top = 38, width - 38, 28, height - 52  # above the plot: 4 rows of event labels, the legend
    span = max(1, report.end_ms - report.start_ms)

    def x_of(ts: int) -> float:
        return left + (right - left) * (ts - report.start_ms) / span

    lo, hi = 30.0, 200.0  # HR and BP share the left axis; SpO2 has its own on the right (80-100 %)

    def y_of(value: float) -> float:
        return bottom + (top - bottom) * (min(max(value, lo), hi) - lo) / (hi - lo)

    def y_spo2(value: float) -> float:
        return bottom + (top - bottom) * (min(max(value, 80.0), 100.0) - 80.0) / 20.0

    grey = colors.HexColor("#bbbbbb")
    for value in range(40, 201, 20):
        drawing.add(Line(left, y_of(value), right, y_of(value), strokeColor=colors.HexColor("#e4e4e4"), strokeWidth=0.4))
        drawing.add(String(left - 4, y_of(value) - 3, str(value), fontSize=6.5, textAnchor="end"))
    for value in (80, 85, 90, 95, 100):
        drawing.add(String(right + 4, y_spo2(value) - 3, f"{value}%", fontSize=6.5,
                           fillColor=colors.HexColor(CHART_COLOURS["spo2"])))
    drawing.add(Line(left, bottom, right, bottom, strokeColor=grey))
    drawing.add(Line(left, bottom, left, top, strokeColor=grey))
    step = 10 if span <= 3 * 3600_000 else 30
    first = report.session.started_at
    minute = -((first - report.start_ms) // 60_000 // step) * step
    while first + minute * 60_000 <= report.end_ms:
        ts = first + minute * 60_000
        if ts >= report.start_ms:
            drawing.add(Line(x_of(ts), bottom, x_of(ts), bottom - 3, strokeColor=grey))
            drawing.add(String(x_of(ts), bottom - 11, f"{minute:+d} min" if minute else "start", fontSize=6.5,
                               textAnchor="middle"))
        minute += step
    drawing.add(String(left, 6, f"minutes from session start ({utc(first)} UTC)", fontSize=6.5))

    def polyline(vital: str, scale: Callable[[float], float]) -> None:
        points: list[float] = []
        runs: list[list[float]] = []
        for ts, value in zip(report.series.times, report.series.mean.get(vital, []), strict=False):
            if value is None:
                if points:
                    runs.append(points)
                points = []
                continue
            points += [x_of(ts), scale(value)]
        if points:
            runs.append(points)
        for run in runs:
            if len(run) >= 4:
                drawing.add(PolyLine(run, strokeColor=colors.HexColor(CHART_COLOURS[vital]), strokeWidth=1.1))

    polyline("hr", y_of)
    polyline("spo2", y_spo2)
    for reading in report.cuff:
        for vital in ("sys", "dia"):
            value = getattr(reading, vital)
            if value is not None:
                drawing.add(Circle(x_of(reading.ts_ms), y_of(value), 2.2, fillColor=colors.HexColor(CHART_COLOURS[vital]),
                                   strokeColor=None))
    for index, (ts, text) in enumerate(sorted(report.markers)):
        if report.start_ms <= ts <= report.end_ms:
            x = x_of(ts)
            row = index % 4
            drawing.add(Line(x, bottom, x, top + 8 * row + 7, strokeColor=colors.HexColor("#7a5c00"), strokeWidth=0.6,
                             strokeDashArray=[2, 2]))
            near_end = x > right - 60  # labels near the right edge run leftwards, inside the chart
            drawing.add(String(x - 1.5 if near_end else x + 1.5, top + 2 + 8 * row, text[:18], fontSize=6,
                               fillColor=colors.HexColor("#7a5c00"), textAnchor="end" if near_end else "start"))
    legend = [("HR /min", "hr"), ("SpO2 % (right axis)", "spo2"), ("cuff systolic", "sys"), ("cuff diastolic", "dia")]
    x = left
    for text, vital in legend:
        drawing.add(Line(x, height - 8, x + 12, height - 8, strokeColor=colors.HexColor(CHART_COLOURS[vital]),
                         strokeWidth=2))
        drawing.add(String(x + 15, height - 10.5, text, fontSize=7))
        x += 95
    drawing.add(String(x, height - 10.5, "- - - recorded events", fontSize=7, fillColor=colors.HexColor("#7a5c00")))
    return drawing


# --- PDF -------------------------------------------------------------------------------------------------

def render_pdf(report: SessionReport) -> bytes:
    """Return the report as a PDF (A4, ReportLab)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=styles["BodyText"], fontSize=8.5, leading=10.5)
    small = ParagraphStyle("small", parent=body, fontSize=7, leading=8.5, textColor=colors.HexColor("#555555"))
    h1 = ParagraphStyle("h1", parent=styles["Heading1"], fontSize=15, spaceAfter=2)
    h2 = ParagraphStyle("h2", parent=styles["Heading2"], fontSize=10.5, spaceBefore=8, spaceAfter=3,
                        textColor=colors.HexColor("#0b3d62"), keepWithNext=1)

    def para(text: object, style: ParagraphStyle = body) -> Paragraph:
        return Paragraph(html_escape.escape(str(text)), style)

    def grid(head: Sequence[str], rows: Sequence[Sequence[object]], widths: Sequence[float] | None = None,
             empty: str = "none recorded") -> Any:
        if not rows:
            return para(empty, small)
        data = [[para(h, small) for h in head]] + [[para(c) for c in row] for row in rows]
        table = Table(data, colWidths=widths, repeatRows=1, hAlign="LEFT")
        table.setStyle(TableStyle([
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef4")),
            ("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#b8c2cc")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f7f9fb")]),
            ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ]))
        return table

    def pairs(items: Sequence[tuple[str, str]]) -> Any:
        rows = [items[i:i + 2] for i in range(0, len(items), 2)]
        data = [[cell for pair in row for cell in (para(pair[0], small), para(pair[1]))] for row in rows]
        for row in data:
            row += [""] * (4 - len(row))
        table = Table(data, colWidths=[36 * mm, 50 * mm, 36 * mm, 50 * mm], hAlign="LEFT")
        table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#b8c2cc")),
                                   ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f2f5f8")),
                                   ("BACKGROUND", (2, 0), (2, -1), colors.HexColor("#f2f5f8")),
                                   ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
        return table

    session = report.session
    story: list[Any] = [
        para("Infusion session report", h1),
        para(f"Site {report.site} · chair {report.chair} · session {session.session_id} · "
             f"generated {utc(report.generated_at, date=True)}", small),
        Spacer(1, 4),
        para("Patient and treatment", h2), pairs(report.facts),
        KeepTogether([para("Vitals trend", h2), chart(report, width=A4[0] - 36 * mm)]),
        para("Event timeline", h2),
        grid(TIMELINE_HEAD, [[utc(r.ts), r.kind, r.text, r.user] for r in report.timeline],
             [18 * mm, 22 * mm, 100 * mm, 34 * mm]),
        para("Assessments", h2),
        grid(ASSESS_HEAD, [[utc(ts), scale, total, items, user] for ts, scale, total, items, user in report.assessments],
             [18 * mm, 28 * mm, 28 * mm, 66 * mm, 34 * mm], "no assessment recorded"),
        para("Cuff blood pressure", h2),
        grid(CUFF_HEAD, cuff_rows(report), None, "no cuff reading stored"),
        para("Alarms", h2),
        grid(ALARM_HEAD, alarm_rows(report), [18 * mm, 16 * mm, 16 * mm, 64 * mm, 18 * mm, 42 * mm], "no alarm"),
        para("Discharge", h2),
        pairs(report.discharge) if report.discharge else para("not discharged", small),
        Spacer(1, 10), para(DISCLAIMER, small),
    ]

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(colors.HexColor("#555555"))
        canvas.drawString(18 * mm, 10 * mm, f"{report.site} / {report.chair} / session {session.session_id} / "
                                            f"patient ref {session.patient_ref or '-'}")
        canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, f"page {doc.page}")
        canvas.restoreState()

    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=15 * mm,
                            bottomMargin=18 * mm, title=f"Session report {session.session_id}",
                            author="infusion-monitor", subject=f"{report.site}/{report.chair}")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()


# --- HTML ------------------------------------------------------------------------------------------------

HTML_STYLE = """
body{font:13px/1.35 system-ui,sans-serif;color:#111;max-width:900px;margin:24px auto;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:15px;color:#0b3d62;margin:18px 0 6px;border-bottom:1px solid #b8c2cc}
table{border-collapse:collapse;width:100%;margin:4px 0}td,th{border:1px solid #b8c2cc;padding:3px 6px;text-align:left;
vertical-align:top}th{background:#e8eef4;font-weight:600}.muted{color:#555;font-size:11px}
dl{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:0;border:1px solid #b8c2cc}
dt,dd{margin:0;padding:3px 6px;border:1px solid #e0e6eb}dt{background:#f2f5f8;color:#444}
@media print{body{margin:0}a{display:none}}
"""


def render_html(report: SessionReport) -> str:
    """Return the report as a self-contained HTML page (the chart inline as SVG)."""
    from reportlab.graphics import renderSVG

    esc = html_escape.escape

    def grid(head: Sequence[str], rows: Sequence[Sequence[object]], empty: str = "none recorded") -> str:
        if not rows:
            return f'<p class="muted">{esc(empty)}</p>'
        head_html = "".join(f"<th>{esc(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head_html}</tr></thead><tbody>{body}</tbody></table>"

    def pairs(items: Sequence[tuple[str, str]]) -> str:
        return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"

    svg = renderSVG.drawToString(chart(report, width=860, height=330))
    svg = svg[svg.find("<svg"):]
    session = report.session
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Session report {esc(session.session_id)}</title><style>{HTML_STYLE}</style></head><body>",
        "<h1>Infusion session report</h1>",
        f'<p class="muted">Site {esc(report.site)} · chair {esc(report.chair)} · session {esc(session.session_id)} · '
        f"generated {esc(utc(report.generated_at, date=True))}</p>",
        "<h2>Patient and treatment</h2>", pairs(report.facts),
        "<h2>Vitals trend</h2>", svg,
        "<h2>Event timeline</h2>",
        grid(TIMELINE_HEAD, [[utc(r.ts), r.kind, r.text, r.user] for r in report.timeline]),
        "<h2>Assessments</h2>",
        grid(ASSESS_HEAD, [[utc(ts), s, t, i, u] for ts, s, t, i, u in report.assessments], "no assessment recorded"),
        "<h2>Cuff blood pressure</h2>", grid(CUFF_HEAD, cuff_rows(report), "no cuff reading stored"),
        "<h2>Alarms</h2>", grid(ALARM_HEAD, alarm_rows(report), "no alarm"),
        "<h2>Discharge</h2>", pairs(report.discharge) if report.discharge else '<p class="muted">not discharged</p>',
        f'<p class="muted">{esc(DISCLAIMER)}</p></body></html>',
    ]
    return "\n".join(parts)


def render(report: SessionReport, fmt: str) -> bytes:
    """Return the report as ``pdf`` or ``html`` bytes."""
    if fmt == "pdf":
        return render_pdf(report)
    if fmt == "html":
        return render_html(report).encode("utf-8")
    raise ValueError(f"report format must be pdf or html, not {fmt!r}")
