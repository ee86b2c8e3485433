"""The session-record panel of the chair view: start a session, record infusion events and assessments, discharge,
the session log, the record state (elapsed, remaining, due, recovery, readiness) and the printable report.

Everything a nurse enters is published, with the signed-in user as author, for the ingest to validate and store
(dashboard/record.py); the panel shows what the ingest published back. Only RECORDING_ROLES see the forms.
The report is served at ``/report/{site}/{chair}/{session}.pdf`` (or ``.html``), behind the login gate and the
site scope like the CSV export.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from dashboard.components import clock_text, table
from dashboard.history import HistoryUnavailable
from dashboard.live import now_ms
from dashboard.record import (
    RECORDING_ROLES,
    RecordCache,
    chair_clock,
    new_session_id,
    number_or_none,
    tile_line,
    total_mg,
)
from dashboard.services import Services
from dashboard.state import format_elapsed
from vitals.care import ADVERSE_KINDS, RATE_UNITS
from vitals.careplan import load_care_plan
from vitals.records import Session
from vitals.scales import SCALES, aldrete_prefill
from vitals.session_record import progress
from vitals.topics import TopicError, check_id

log = logging.getLogger("dashboard.session")

DRUGS = ("ketamine", "esketamine")
# The chair's last cuff reading pre-fills the baseline only if it is at most this old.
BASELINE_MAX_AGE_MS = 30 * 60_000
# ... and the modified Aldrete's circulation item only if it is at most this old (SpO2: only while live).
PREFILL_CUFF_MAX_AGE_MS = 20 * 60_000
EVENT_BUTTONS = (("infusion_start", "Start infusion"), ("pause", "Pause"), ("resume", "Resume"),
                 ("infusion_stop", "Stop infusion"))


def records(services: Services) -> RecordCache:
    """Return the dashboard's record cache (made by ``register``)."""
    return services.records  # type: ignore[attr-defined,no-any-return]


def may_record(services: Services) -> bool:
    """Return whether the current user may record (start, record events and assessments, discharge)."""
    who = services.user()
    return who is not None and who.role in RECORDING_ROLES


def _field(label: str, control: Any, hint: str | None = None) -> html.Label:
    return html.Label([html.Span(label, className="rec-label"), control,
                       *([html.Span(hint, className="muted rec-hint")] if hint else [])], className="rec-field")


def start_form(services: Services, site: str, chair: str) -> html.Div:
    """Return the form that starts a session, baseline BP pre-filled from the chair's last cuff reading."""
    state = services.state.chair_state(site, chair)
    cuff = state.cuff if state else None
    if cuff is not None and now_ms() - cuff[0] > BASELINE_MAX_AGE_MS:  # likely the previous patient's: never offered
        hint = f"the chair's last cuff reading ({clock_text(cuff[0])}) is too old: take one and enter it"
        cuff = None
    else:
        hint = (f"from the cuff reading of {clock_text(cuff[0])}; correct it or enter one" if cuff
                else "no cuff reading from this chair: take one and enter it")
    sys_value, dia_value = (cuff[1], cuff[2]) if cuff else (None, None)
    return html.Div([
        html.H4("Start a session"),
        html.Div([
            _field("Patient ref (pseudonymous, never a name)",
                   dcc.Input(id="rec-ref", type="text", maxLength=64, placeholder="e.g. P-4711", autoComplete="off")),
            _field("Weight (kg)", dcc.Input(id="rec-weight", type="number", min=20, max=300, step=0.1)),
            _field("Drug", dcc.Dropdown(id="rec-drug", options=list(DRUGS), value=DRUGS[0], clearable=False)),
            _field("Dose (mg/kg)", dcc.Input(id="rec-dose", type="number", min=0.01, max=5, step=0.01, value=0.5)),
            _field("Total dose", html.Output(html.Span("enter weight and dose", className="muted"), id="rec-total",
                                             className="rec-total")),
            _field("Planned duration (min)", dcc.Input(id="rec-duration", type="number", min=1, max=600, value=40)),
            _field("Baseline systolic (mmHg)", dcc.Input(id="rec-bsys", type="number", min=40, max=300,
                                                         value=sys_value)),
            _field("Baseline diastolic (mmHg)", dcc.Input(id="rec-bdia", type="number", min=20, max=200,
                                                          value=dia_value), hint),
        ], className="rec-grid"),
        dcc.Store(id="rec-bsource", data={"sys": sys_value, "dia": dia_value}),
        html.Button("Start session", id="rec-start", className="btn btn-ack", n_clicks=0),
    ], id="rec-start-form", className="rec-form")


def event_form() -> html.Div:
    """Return the infusion event buttons, rate change, adverse event and note."""
    return html.Div([
        html.H4("Infusion"),
        html.Div([html.Button(text, id={"type": "rec-ev", "event": kind}, className="btn", n_clicks=0)
                  for kind, text in EVENT_BUTTONS], className="rec-buttons"),
        html.Div([
            _field("Rate", dcc.Input(id="rec-rate", type="number", min=0, max=2000, step=0.1)),
            _field("Unit", dcc.Dropdown(id="rec-rate-unit", options=list(RATE_UNITS), value="ml/h", clearable=False)),
            html.Button("Record rate change", id={"type": "rec-ev", "event": "rate_change"}, className="btn", n_clicks=0),
        ], className="rec-row"),
        html.Div([
            _field("Adverse event", dcc.Dropdown(id="rec-ae-kind", options=[{"label": k.replace("_", " "), "value": k}
                                                                           for k in ADVERSE_KINDS])),
            _field("Treatment given", dcc.Input(id="rec-ae-treatment", type="text", maxLength=64)),
            _field("Dose", dcc.Input(id="rec-ae-dose", type="text", maxLength=64, placeholder="e.g. 4 mg IV")),
            html.Button("Record adverse event", id={"type": "rec-ev", "event": "adverse_event"}, className="btn",
                        n_clicks=0),
        ], className="rec-row"),
        html.Div([
            _field("Note", dcc.Input(id="rec-note", type="text", maxLength=500, className="rec-note")),
            html.Button("Record note", id={"type": "rec-ev", "event": "note"}, className="btn", n_clicks=0),
        ], className="rec-row"),
    ], id="rec-event-form", className="rec-form")


def scale_items(scale_id: str, prefill: dict[str, int] | None = None) -> list[Any]:
    """Return the inputs of one scale, built from the scales data file (never hand-written wording)."""
    scale = SCALES[scale_id]
    prefill = prefill or {}
    out: list[Any] = [html.P(f"{scale.title}: total {scale.total_min}-{scale.total_max}"
                             + (f", discharge at {scale.discharge_min} or more" if scale.discharge_min else ""),
                             className="muted")]
    for item in scale.items:
        if item.every_integer:
            anchors = {s: w for s, w in item.options}
            options = [{"label": f"{s}" + (f" - {anchors[s]}" if s in anchors else ""), "value": s}
                       for s in range(item.low, item.high + 1)]
        else:
            options = [{"label": f"{s} - {w}", "value": s} for s, w in item.options]
        note = " (proposed from the monitor: confirm or correct)" if item.id in prefill else ""
        out.append(html.Div([
            html.Div(f"{item.label}{note}", className="rec-item-label"),
            dcc.RadioItems(id={"type": "rec-item", "scale": scale_id, "item": item.id}, options=options,
                           value=prefill.get(item.id), className="rec-radio", inputClassName="rec-radio-input"),
        ], className="rec-item"))
    return out


def assessment_form() -> html.Div:
    """Return the assessment form: a scale chooser and that scale's items."""
    return html.Div([
        html.H4("Assessment"),
        dcc.RadioItems(id="rec-scale", options=[{"label": f"{s.name} ({s.purpose})", "value": s.id}
                                                for s in SCALES.values()], value=None, inline=True,
                       className="rec-scales", inputClassName="rec-radio-input"),
        html.Div(id="rec-items"),
        html.Button("Record assessment", id="rec-assess", className="btn btn-ack", n_clicks=0),
    ], id="rec-assess-form", className="rec-form")


def discharge_form() -> html.Div:
    """Return the end-of-session and discharge controls (an override needs a recorded reason)."""
    return html.Div([
        html.H4("Discharge"),
        html.Div(id="rec-readiness"),
        _field("Override reason (only to discharge past unmet criteria; recorded)",
               dcc.Input(id="rec-override", type="text", maxLength=500, className="rec-note")),
        html.Div([html.Button("Discharge", id="rec-discharge", className="btn btn-ack", n_clicks=0),
                  html.Button("End session", id="rec-end", className="btn", n_clicks=0)], className="rec-buttons"),
    ], id="rec-discharge-form", className="rec-form")


def panel(services: Services, site: str, chair: str) -> html.Div:
    """Return the chair view's session-record panel (the forms only for roles that may record)."""
    parts: list[Any] = [
        html.H3("Session record"),
        html.Div(id="rec-status", className="rec-status", role="status"),
        html.Div(id="rec-report-links", className="rec-links"),
        dcc.Store(id="rec-log-key", data=None),
    ]
    if may_record(services):
        parts += [
            dcc.Store(id="rec-mode", data=None),
            html.Div(id="rec-feedback", role="status", className="feedback"),
            start_form(services, site, chair), event_form(), assessment_form(), discharge_form(),
        ]
    parts += [html.H4("Session log"), html.Div(id="rec-log")]
    return html.Div(parts, className="panel", id="record-panel")


# --- what the panel shows ------------------------------------------------------------------------------------

def _clock(ms: Any) -> str:
    number = number_or_none(ms)
    return "-" if number is None else format_elapsed(int(number))


PHASES = {"none": "no infusion", "pre": "before the infusion", "infusing": "infusing", "paused": "infusion PAUSED",
          "recovery": "recovery", "discharged": "discharged"}


def state_of(cache: RecordCache, session: Session | None, site: str, chair: str) -> dict[str, Any] | None:
    """Return the chair's published session-record state when it is about ``session``, else None."""
    state = cache.state(site, chair)
    if session is None or not isinstance(state, dict) or state.get("session_id") != session.session_id:
        return None
    return state


def status_view(session: Session | None, state: dict[str, Any] | None, now: int, refusal: Any = None) -> list[Any]:
    """Return the record state line: session, infusion elapsed/remaining (following pauses), what is due, recovery
    time and discharge readiness, all as the ingest published them (clocks advanced to now between publications)."""
    if session is None:
        return [html.P("No session on this chair.", className="muted")]
    bits: list[Any] = [html.Span(f"Session {session.session_id} ({session.state})", className="rec-chip")]
    if session.patient_ref:
        bits.append(html.Span(f"patient ref {session.patient_ref}", className="rec-chip"))
    if session.total_mg is not None:
        bits.append(html.Span(f"{session.drug or 'dose'} {session.dose_mg_per_kg:g} mg/kg = {session.total_mg:g} mg",
                              className="rec-chip"))
    if state is not None:
        phase = str(state.get("phase") or "none")
        clocks = progress(state, max(now, int(state.get("ts") or 0)))
        bits.append(html.Span(PHASES.get(phase, phase), className=f"rec-chip rec-phase-{phase}", id="rec-phase"))
        infusion = state.get("infusion") or {}
        if infusion.get("started_at"):
            bits.append(html.Span(f"infusion {_clock(clocks['elapsed_ms'])}", className="rec-chip", id="rec-elapsed"))
            if clocks["remaining_ms"] is not None and phase in ("infusing", "paused"):
                bits.append(html.Span(f"remaining {_clock(clocks['remaining_ms'])}", className="rec-chip",
                                      id="rec-remaining"))
            if infusion.get("rate") is not None:
                bits.append(html.Span(f"rate {infusion['rate']:g} {infusion.get('rate_unit') or ''}".strip(),
                                      className="rec-chip"))
        if clocks["recovery_ms"] is not None:
            minimum = (state.get("recovery") or {}).get("min_observation_ms")
            of = f" of {_clock(minimum)} minimum" if minimum else ""
            bits.append(html.Span(f"recovery {_clock(clocks['recovery_ms'])}{of}", className="rec-chip",
                                  id="rec-recovery"))
        for item in state.get("due") or []:
            if isinstance(item, dict) and (item.get("due") or item.get("overdue")):
                late = item.get("overdue")
                bits.append(html.Span(f"{'OVERDUE' if late else 'due'}: {item.get('label', item.get('id', '?'))}",
                                      className=f"rec-chip rec-due{' rec-overdue' if late else ''}"))
        upcoming = [i for i in state.get("due") or [] if isinstance(i, dict) and not i.get("due")
                    and isinstance(i.get("due_at"), int)]
        if upcoming:
            first = min(upcoming, key=lambda i: i["due_at"])
            bits.append(html.Span(f"next: {first.get('label', first.get('id'))} at {clock_text(first['due_at'])}",
                                  className="rec-chip muted"))
        readiness = state.get("readiness")
        if isinstance(readiness, dict) and phase != "discharged":
            ok = bool(readiness.get("ready"))
            bits.append(html.Span("ready for discharge" if ok else "not ready for discharge",
                                  className=f"rec-chip {'rec-ready' if ok else 'rec-not-ready'}", id="rec-ready"))
    elif session.state == "active":
        bits.append(html.Span(f"started {format_elapsed(now - session.started_at)} ago", className="rec-chip"))
    out: list[Any] = [html.Div(bits, className="rec-chips")]
    if refusal is not None:
        out.append(html.Div(f"Refused by the ingest at {clock_text(refusal.ts)} ({refusal.type or 'record'}): "
                            f"{refusal.reason}", className="banner banner-warn", id="rec-refusal"))
    return out


def readiness_view(state: dict[str, Any] | None) -> list[Any]:
    """Return the discharge criteria as the ingest judges them: each met or not (never recomputed here)."""
    readiness = state.get("readiness") if state else None
    if state is not None and state.get("phase") == "discharged":
        return [html.P("Discharged.", id="rec-ready-text")]
    if not isinstance(readiness, dict):
        return [html.P("Discharge readiness is judged once the infusion has stopped.", className="muted",
                       id="rec-ready-text")]
    rows = [html.Li(f"{'met' if c.get('met') else 'NOT met'}: {c.get('id', '')}"
                    + (f" ({c['detail']})" if c.get("detail") else ""),
                    className="rec-met" if c.get("met") else "rec-unmet")
            for c in readiness.get("criteria") or [] if isinstance(c, dict)]
    head = ("All discharge criteria met." if readiness.get("ready") else
            "Discharge criteria not met: discharging needs a recorded override reason.")
    return [html.P(head, id="rec-ready-text"), html.Ul(rows, className="rec-criteria")]


def log_rows(items: list[Any]) -> list[list[Any]]:
    """Return session log rows (time, what, by), oldest first."""
    return [[clock_text(r.ts), r.summary(), r.author] for r in sorted(items, key=lambda r: r.ts)]


def report_links(site: str, chair: str, session: Session | None) -> list[Any]:
    """Return the links to the session's printable report."""
    if session is None:
        return []
    base = f"/report/{site}/{chair}/{session.session_id}"
    return [html.A("Session report (PDF)", href=base + ".pdf", target="_blank", className="btn btn-export",
                   id="rec-report-pdf"),
            html.A("Session report (HTML)", href=base + ".html", target="_blank", className="btn btn-export",
                   id="rec-report-html")]


# --- publishing ----------------------------------------------------------------------------------------------

def publish_record(services: Services, site: str, chair: str, session: Session | None, body: dict[str, Any]) -> str:
    """Publish one record of the chair's session with the signed-in user as author; return what to tell the user."""
    who = services.user()
    if who is None or who.role not in RECORDING_ROLES:
        return "Your role may not record."
    if session is None or (session.state != "active" and body.get("type") != "discharge"):
        return "No active session on this chair: start one first."
    if services.feed is None:
        return "No broker configured: nothing was recorded."
    payload = {"type": body["type"], "ts": now_ms(), "session_id": session.session_id, "author": who.user,
               **{k: v for k, v in body.items() if k != "type" and v is not None and v != ""}}
    ok = services.feed.publish(services.topics.record(site, chair), json.dumps(payload))
    log.info("record %s of %s/%s by %s: %s", body["type"], site, chair, who.user, "sent" if ok else "NOT sent")
    if not ok:
        return "NOT SENT: the broker did not take it. Try again."
    return f"Sent {body['type'].replace('_', ' ')} by {who.user}; the session log shows it once the ingest has stored it."


def publish_session(services: Services, session: Session) -> bool:
    """Publish a nurse's session, retained, on the chair's session topic."""
    if services.feed is None:
        return False
    return services.feed.publish(services.topics.session(session.site, session.chair),
                                 json.dumps(session.to_json_obj()), retain=True)


def _chair(services: Services, key: Any) -> tuple[str, str]:
    from dashboard.pages.chair import chair_key

    return chair_key(services, key)


def clock_of(services: Services, site: str, chair: str, now: int) -> int:
    """Return the chair's clock (dashboard/record.py chair_clock) from its newest live value."""
    state = services.state.chair_state(site, chair)
    values = list(state.values.values()) if state is not None else []
    return chair_clock(max(values, key=lambda v: v[0]) if values else None, now)


def _live_session(services: Services, site: str, chair: str) -> Session | None:
    state = services.state.chair_state(site, chair)
    return state.session if state is not None else None


def register(app: Dash, services: Services) -> None:
    """Register the panel's callbacks, the feed's record topics and the report route."""
    cache = RecordCache()
    services.records = cache  # type: ignore[attr-defined]
    if services.feed is not None:
        services.feed.add_kind("record_state", cache.apply_state)

        def on_rejected(_topic: str, payload: bytes) -> None:
            try:
                report = json.loads(payload)
                parsed = services.topics.parse_chair(str(report.get("topic", "")))
            except (ValueError, TopicError, AttributeError):
                return
            if parsed.kind in ("record", "session"):
                cache.apply_refusal(parsed.site, parsed.chair, report)

        services.feed.add_topic(services.topics.rejected, on_rejected)
    install_report(app.server, services)

    @app.callback(Output("rec-status", "children"), Input("tick", "n_intervals"), State("chair-key", "data"))
    def rec_tick(_n: int, key: dict[str, str]) -> Any:
        # Every second, from the live cache only (never the store): the clocks move.
        site, chair = _chair(services, key)
        now = now_ms()
        session = _live_session(services, site, chair)
        state = state_of(cache, session, site, chair)
        refusal = cache.refusal(site, chair, now)
        if refusal is not None and state is not None and int(state.get("ts") or 0) > refusal.ts:
            refusal = None  # the ingest accepted something since: the refusal is history (in the audit trail)
        return status_view(session, state, clock_of(services, site, chair, now), refusal)

    @app.callback(Output("rec-log", "children"), Output("rec-report-links", "children"), Output("rec-log-key", "data"),
                  Input("tick", "n_intervals"), State("chair-key", "data"), State("rec-log-key", "data"))
    def rec_log(_n: int, key: dict[str, str], shown: Any) -> tuple[Any, Any, Any]:
        # The log and the report links from the store, read again only when the ingest published a new state
        # (every stored record does) or the session changed.
        from dashboard.pages.chair import current_session

        site, chair = _chair(services, key)
        live = _live_session(services, site, chair)
        state = state_of(cache, live, site, chair)
        # ... and every 15 s whatever happens (an edit of the store by another path, a state lost with a restart).
        version = [live.session_id if live else None, state.get("ts") if state else None, now_ms() // 15_000]
        if shown is not None and version == shown:
            return no_update, no_update, no_update
        session = live or current_session(services, site, chair)
        try:
            items = services.history.with_store(
                lambda s: s.care_records(site, chair, session.session_id)) if session else []
        except HistoryUnavailable as exc:  # try again at the next tick
            return html.P(f"Session log unavailable: {exc}", className="muted"), report_links(site, chair, session), None
        log_view = table(["time", "what", "by"], log_rows(items), ident="rec-log-table",
                         empty="Nothing recorded in this session yet.")
        if state is not None and isinstance(state.get("events"), int) and len(items) < state["events"]:
            version = None  # the ingest published before its writer stored the newest record: read again next tick
        return log_view, report_links(site, chair, session), version

    register_forms(app, services, cache)  # their components exist only for roles that may record


def register_forms(app: Dash, services: Services, cache: RecordCache) -> None:
    """Register the callbacks of the recording forms."""

    @app.callback(Output("rec-total", "children"), Input("rec-weight", "value"), Input("rec-dose", "value"))
    def rec_total(weight: Any, dose: Any) -> Any:
        total = total_mg(weight, dose)
        return html.Span("enter weight and dose", className="muted") if total is None else f"{total:g} mg"

    @app.callback(Output("rec-mode", "data"), Output("rec-start-form", "hidden"), Output("rec-event-form", "hidden"),
                  Output("rec-assess-form", "hidden"), Output("rec-discharge-form", "hidden"),
                  Output("rec-readiness", "children"),
                  Input("tick", "n_intervals"), State("chair-key", "data"), State("rec-mode", "data"))
    def rec_mode(_n: int, key: dict[str, str], shown: Any) -> tuple[Any, ...]:
        site, chair = _chair(services, key)
        session = _live_session(services, site, chair)
        state = state_of(cache, session, site, chair)
        discharged = state is not None and state.get("phase") == "discharged"
        mode = "none" if session is None or session.state != "active" else ("discharged" if discharged else "active")
        readiness = readiness_view(state)
        if mode == shown:
            return no_update, no_update, no_update, no_update, no_update, readiness
        recording = mode == "active"
        return mode, mode != "none", not recording, not recording, mode == "none", readiness

    @app.callback(Output("rec-items", "children"), Input("rec-scale", "value"), State("chair-key", "data"))
    def rec_items(scale_id: Any, key: dict[str, str]) -> Any:
        site, chair = _chair(services, key)
        if scale_id not in SCALES:
            return html.P("Choose a scale.", className="muted")
        prefill: dict[str, int] = {}
        if scale_id == "aldrete":
            state = services.state.chair_state(site, chair)
            session = state.session if state else None
            clock = clock_of(services, site, chair, now_ms())
            cuff = state.cuff if state else None
            if cuff is not None and clock - cuff[0] > PREFILL_CUFF_MAX_AGE_MS:
                cuff = None  # an old cuff reading proposes nothing: the nurse takes one
            spo2 = state.values.get("spo2") if state else None
            if spo2 is not None and clock - spo2[0] > services.state.no_data_ms:
                spo2 = None  # a stale SpO2 is never proposed as current
            unit = load_care_plan(services.config.care_plan_file, site).circulation
            prefill = aldrete_prefill(cuff[1] if cuff else None, session.baseline_sys if session else None,
                                      spo2[1] if spo2 else None, unit)
        return scale_items(scale_id, prefill)

    @app.callback(
        Output("rec-feedback", "children"),
        Input("rec-start", "n_clicks"), Input({"type": "rec-ev", "event": ALL}, "n_clicks"),
        Input("rec-assess", "n_clicks"), Input("rec-discharge", "n_clicks"), Input("rec-end", "n_clicks"),
        State("chair-key", "data"),
        State("rec-ref", "value"), State("rec-weight", "value"), State("rec-drug", "value"), State("rec-dose", "value"),
        State("rec-duration", "value"), State("rec-bsys", "value"), State("rec-bdia", "value"),
        State("rec-bsource", "data"),
        State("rec-rate", "value"), State("rec-rate-unit", "value"),
        State("rec-ae-kind", "value"), State("rec-ae-treatment", "value"), State("rec-ae-dose", "value"),
        State("rec-note", "value"),
        State("rec-scale", "value"), State({"type": "rec-item", "scale": ALL, "item": ALL}, "value"),
        State("rec-override", "value"),
        prevent_initial_call=True,
    )
    def rec_action(*values: Any) -> Any:
        trigger = ctx.triggered_id
        if trigger is None or not any(t.get("value") for t in ctx.triggered):
            return no_update
        (_s, _e, _a, _d, _end, key, ref, weight, drug, dose, duration, bsys, bdia, bsource, rate, unit, ae_kind,
         ae_treatment, ae_dose, note, scale_id, item_values, override) = values
        site, chair = _chair(services, key)
        session = _live_session(services, site, chair)
        if trigger == "rec-start":
            return start_session(services, site, chair, session, ref, weight, drug, dose, duration, bsys, bdia,
                                 bsource)
        if trigger == "rec-end":
            return end_session(services, session)
        if trigger == "rec-assess":
            if scale_id not in SCALES:
                return "Choose a scale."
            items = {spec["id"]["item"]: value for spec, value in zip(ctx.states_list[-2], item_values, strict=False)
                     if spec["id"]["scale"] == scale_id}
            missing = [i.label for i in SCALES[scale_id].items if items.get(i.id) is None]
            if missing:
                return f"Not sent: score every item ({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})."
            return publish_record(services, site, chair, session, {"type": "assessment", "scale": scale_id,
                                                                  "items": items})
        if trigger == "rec-discharge":  # the ingest judges the criteria; its refusal shows above with the reason
            reason = (override or "").strip()
            return publish_record(services, site, chair, session, {"type": "discharge",
                                                                  "override_reason": reason or None})
        if isinstance(trigger, dict) and trigger.get("type") == "rec-ev":
            kind = str(trigger.get("event"))
            body: dict[str, Any] = {"type": kind}
            if kind in ("rate_change", "infusion_start") and number_or_none(rate) is not None:
                body.update(rate=number_or_none(rate), rate_unit=unit)
            elif kind == "rate_change":
                return "Not sent: enter the new rate."
            if kind == "adverse_event":
                if not ae_kind:
                    return "Not sent: choose the adverse event."
                body.update(kind=ae_kind, treatment=(ae_treatment or "").strip() or None,
                            dose=(ae_dose or "").strip() or None)
            if kind == "note":
                if not (note or "").strip():
                    return "Not sent: the note is empty."
                body["text"] = note.strip()
            return publish_record(services, site, chair, session, body)
        return no_update


def start_session(services: Services, site: str, chair: str, current: Session | None, ref: Any, weight: Any,
                  drug: Any, dose: Any, duration: Any, bsys: Any, bdia: Any, bsource: Any) -> str:
    """Publish a nurse-started session; return what to tell the user."""
    from vitals.records import RecordError

    who = services.user()
    if who is None or who.role not in RECORDING_ROLES:
        return "Your role may not start sessions."
    if current is not None and current.state == "active":
        return f"Session {current.session_id} is still active on this chair: end it first."
    weight_kg, dose_kg = number_or_none(weight), number_or_none(dose)
    sys_value, dia_value = number_or_none(bsys), number_or_none(bdia)
    if not ref or weight_kg is None or dose_kg is None or sys_value is None:
        return "Not started: patient ref, weight, dose and baseline systolic are needed."
    prefilled = isinstance(bsource, dict) and bsource.get("sys") == sys_value and bsource.get("dia") == dia_value
    doc = {"session_id": new_session_id(), "state": "active", "started_at": now_ms(), "drug": drug,
           "dose_mg_per_kg": dose_kg, "duration_min": number_or_none(duration), "patient_ref": str(ref).strip(),
           "baseline_sys": sys_value, "baseline_dia": dia_value, "weight_kg": weight_kg,
           "total_mg": total_mg(weight_kg, dose_kg), "baseline_source": "cuff" if prefilled else "entered",
           "started_by": who.user}
    try:  # the contract's own check, so a name or a typo is refused here with the same reason the ingest gives
        session = Session.from_payload(site, chair, json.dumps(doc))
    except RecordError as exc:
        return f"Not started: {exc}"
    if not publish_session(services, session):
        return "NOT STARTED: the broker did not take the session."
    log.info("session %s started on %s/%s by %s", session.session_id, site, chair, who.user)
    return f"Session {session.session_id} started by {who.user}."


def end_session(services: Services, session: Session | None) -> str:
    """Publish the chair's session as ended; return what to tell the user."""
    import dataclasses

    who = services.user()
    if who is None or who.role not in RECORDING_ROLES:
        return "Your role may not end sessions."
    if session is None or session.state != "active":
        return "No active session on this chair."
    ended = dataclasses.replace(session, state="ended", ended_at=now_ms())
    if not publish_session(services, ended):
        return "NOT ENDED: the broker did not take it."
    return f"Session {session.session_id} ended by {who.user}."


def install_report(server: Any, services: Services) -> None:
    """Register GET /report/<site>/<chair>/<session>.<pdf|html> (behind the login gate and the site scope)."""
    from flask import Response, abort

    from dashboard.report import ReportError, collect, render

    def report(site: str, chair: str, session_id: str, fmt: str) -> Any:
        try:
            check_id(site, "site id")
            check_id(chair, "chair id")
            check_id(session_id, "session id")
        except TopicError:
            abort(400)
        if fmt not in ("pdf", "html"):
            abort(404)
        if not services.may_see(site):
            abort(404)
        try:
            found = services.history.with_store(lambda s: collect(s, site, chair, session_id))
        except ReportError as exc:
            return Response(f"{exc}\n", 404, mimetype="text/plain")
        except HistoryUnavailable as exc:
            return Response(f"history unavailable: {exc}\n", 503, mimetype="text/plain")
        who = services.user()
        services.audit("session_report", who.user if who else "?", f"{session_id} {fmt}", site=site, chair=chair)
        body = render(found, fmt)
        kind = "application/pdf" if fmt == "pdf" else "text/html; charset=utf-8"
        name = f"session-{site}-{chair}-{session_id}.{fmt}"
        return Response(body, mimetype=kind, headers={"Content-Disposition": f'inline; filename="{name}"'})

    server.add_url_rule("/report/<site>/<chair>/<session_id>.<fmt>", "infusion_report", report, methods=["GET"])


MARKER_COLOUR = "#ffb347"


def record_markers(services: Services, figure: Any, site: str, chair: str, sessions: list[Session]) -> Any:
    """Add the shown sessions' recorded events and assessments to a trend figure as dotted lines with a label."""
    from dashboard.figures import label
    from dashboard.report import short_label

    items: list[Any] = []
    for session in sessions:
        try:
            items += services.history.with_store(lambda s, sid=session.session_id: s.care_records(site, chair, sid))
        except HistoryUnavailable:
            return figure
    # One full-height line per record on the shared time axis, added in one layout update (add_vline per subplot
    # costs ~0.2 s a line).
    shapes, notes = list(figure.layout.shapes or ()), list(figure.layout.annotations or ())
    for record in items:
        moment = datetime.fromtimestamp(record.ts / 1000)
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": moment, "x1": moment, "y0": 0, "y1": 1,
                       "line": {"color": MARKER_COLOUR, "width": 1, "dash": "dot"}})
        notes.append({"x": moment, "xref": "x", "y": 1.0, "yref": "paper", "text": label(short_label(record)),
                      "showarrow": False, "textangle": -90, "xanchor": "left", "yanchor": "top",
                      "font": {"color": MARKER_COLOUR, "size": 10}})
    figure.update_layout(shapes=shapes, annotations=notes)
    return figure


def record_tile(services: Services, site: str, chair: str, now: int) -> list[str] | None:
    """Return an overview tile's session-record line [text, class], or None (nothing published for its session)."""
    cache: RecordCache | None = getattr(services, "records", None)
    state = services.state.chair_state(site, chair)
    if cache is None or state is None or state.session is None:
        return None
    line = tile_line(state.session.session_id, cache.state(site, chair), clock_of(services, site, chair, now))
    return list(line) if line else None
