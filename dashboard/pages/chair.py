"""The chair view: live tile, trends with alarm limits and events, session details, alarm history, CSV export,
and (admins only) the chair's alarm limits."""

from __future__ import annotations

import json
import logging
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from dashboard import whatif
from dashboard.components import PRIORITY_LABEL, clock_text, table, tile
from dashboard.figures import trend_figure
from dashboard.history import HistoryUnavailable, readings_csv
from dashboard.live import now_ms
from dashboard.pages.session import panel as session_panel
from dashboard.pages.session import record_markers
from dashboard.services import Services
from dashboard.state import ChairState, format_elapsed, pending_edit
from vitals.limits import LIMIT_NAMES, AdminEdit, EffectiveLimits, LimitsError, validate
from vitals.reading import LABELS
from vitals.records import Session
from vitals.topics import TopicError, check_id

log = logging.getLogger("dashboard.chair")

RANGES = {"session": "This session", "1h": "Last hour", "4h": "Last 4 hours", "12h": "Last 12 hours", "24h": "Last 24 hours"}
RANGE_MS = {"1h": 3600_000, "4h": 4 * 3600_000, "12h": 12 * 3600_000, "24h": 24 * 3600_000}
# Raw readings exported at most over this span (a day at 1 Hz is 86,400 rows).
MAX_EXPORT_MS = 24 * 3600_000
# Trends refresh this often (the live numbers above them refresh every second).
TREND_REFRESH_MS = 15_000


def layout(services: Services, site: str, chair: str) -> html.Div:
    """Return the chair view for one chair (or a not-found note for an invalid id)."""
    try:
        check_id(site, "site id")
        check_id(chair, "chair id")
    except TopicError as exc:
        return html.Div([html.H2("Unknown chair"), html.P(str(exc))], className="panel")
    who = services.user()
    parts: list[Any] = [
        dcc.Store(id="chair-key", data={"site": site, "chair": chair}),
        dcc.Interval(id="chair-trend-tick", interval=TREND_REFRESH_MS, n_intervals=0),
        dcc.Store(id="chair-limits-version", data=None),
        html.Div([html.H2(f"Chair {chair}"), html.Span(f"site {site}", className="muted")], className="chair-title"),
        html.Div(live_tile(services, site, chair), id="chair-live", className="chair-live"),
        html.Div(
            [
                dcc.Dropdown(id="chair-range", options=[{"label": v, "value": k} for k, v in RANGES.items()],
                             value="session", clearable=False, searchable=False, className="range-dropdown"),
                html.A("Export CSV", id="chair-export", href="#", className="btn btn-export", download=""),
            ],
            className="chair-controls",
        ),
        html.Div(id="chair-history-note", role="status"),
        html.Div(id="chair-limits-note", role="status"),
        dcc.Loading(dcc.Graph(id="chair-trend", config={"displaylogo": False, "responsive": True},
                              style={"height": "900px"}), type="default"),
        html.Div([html.H3("Session"), html.Div(id="chair-session")], className="panel"),
        session_panel(services, site, chair),
        html.Div([html.H3("Alarm history"), html.Div(id="chair-alarm-history")], className="panel"),
    ]
    if who is not None and who.role == "admin":
        parts.append(limits_editor(services, site, chair))
    return html.Div(parts, id="chair-page")


def chair_key(services: Services, key: Any) -> tuple[str, str]:
    """Return (site, chair) of a callback's chair-key; 400 when malformed, 403 for a site this request may not see."""
    from flask import abort

    try:
        site, chair = check_id(key["site"], "site id"), check_id(key["chair"], "chair id")
    except (TopicError, TypeError, KeyError):
        abort(400)
    if not services.may_see(site):
        abort(403)
    return site, chair


def live_tile(services: Services, site: str, chair: str) -> Any:
    """Return the chair's live tile, or a note when nothing live is known about it."""
    at = now_ms()
    view = services.state.tile(site, chair, at)
    if view is None:
        return html.P("Nothing live from this chair yet.", className="muted")
    return tile(view, at)


NOT_PUBLISHED = "Alarm limits not yet published by the alarm engine: no limit lines are drawn."


def limits_note(state: ChairState | None) -> Any:
    """Return what the chair view says about its limits: not published, an edit pending or refused, or whose."""
    effective = state.effective_limits if state else None
    edit = pending_edit(state.limits_edit if state else None, effective)
    parts: list[Any] = []
    if effective is None:
        error = f" ({state.limits_error})" if state and state.limits_error else ""
        parts.append(html.Div(NOT_PUBLISHED + error, className="banner banner-warn", id="limits-not-published"))
    if edit is not None:
        by = f" by {edit.user}" if edit.user else ""
        at = f" at {clock_text(edit.ts)}" if edit.ts else ""
        parts.append(html.Div(f"Pending: the alarm-limit edit{by}{at} is not yet applied by the alarm engine; the "
                              "chart shows the limits it enforces.", className="banner banner-info", id="limits-pending"))
    elif effective is not None and effective.admin and effective.admin.get("status") == "refused":
        parts.append(html.Div(f"The alarm engine refused the alarm-limit edit of {clock_text(effective.admin_ts or 0)}: "
                              f"{effective.admin.get('reason', '')}. The chart shows the limits it enforces.",
                              className="banner banner-warn", id="limits-refused"))
    if effective is not None:
        parts.append(html.P(f"Alarm limits as the alarm engine enforces them (published {clock_text(effective.ts)}).",
                            className="muted", id="limits-published"))
    return parts


def limits_version(state: ChairState | None) -> list[Any]:
    """Return what identifies the limits a chair view shows: the engine's publication and a pending edit."""
    effective = state.effective_limits if state else None
    edit = state.limits_edit if state else None
    return [effective.ts if effective else None, state.limits_error if state else None, edit.ts if edit else None]


def admin_layer(form: dict[str, dict[str, float]], effective: EffectiveLimits | None) -> dict[str, dict[str, float]]:
    """Return the admin edit a saved form makes: values that differ from what the engine enforces, and the earlier
    admin edit's values (a new edit replaces the chair's admin layer), so other layers' values are not pinned."""
    out: dict[str, dict[str, float]] = {}
    for vital, values in form.items():
        for name, value in values.items():
            current = effective.limits.get(vital, {}).get(name) if effective else None
            if current != value or (effective is not None and effective.source(vital, name) == "admin"):
                out.setdefault(vital, {})[name] = value
    return out


def limits_form(effective: EffectiveLimits | None) -> list[Any]:
    """Return the admin form's table, filled with the limits the engine published and where each came from."""
    if effective is None:
        return [html.P(NOT_PUBLISHED + " The form opens when it has.", className="muted")]
    head = html.Thead(html.Tr([html.Th("vital"), html.Th("high alarm below"), html.Th("medium alarm below"),
                               html.Th("medium alarm above"), html.Th("high alarm above")]))
    rows = []
    for vital, values in effective.limits.items():
        cells: list[Any] = [html.Td(LABELS[vital])]
        for name in LIMIT_NAMES:
            if name in values:
                cells.append(html.Td([
                    dcc.Input(id={"type": "limit", "vital": vital, "name": name}, type="number", value=values[name],
                              debounce=True, className="limit-input"),
                    html.Span(effective.source(vital, name) or "", className="muted limit-source",
                              title="where the engine's value came from"),
                ]))
            else:
                cells.append(html.Td(""))
        rows.append(html.Tr(cells))
    return [html.P("The form shows the limits the alarm engine enforces. Saving publishes them, retained, for the "
                   "engine and records the change in the audit trail; the chart shows them once the engine has "
                   "applied them.", className="muted"),
            html.Table([head, html.Tbody(rows)], className="data-table limits-table")]


def limits_editor(services: Services, site: str, chair: str) -> html.Div:
    """Return the admin's alarm-limit panel for a chair."""
    state = services.state.chair_state(site, chair)
    effective = state.effective_limits if state else None
    return html.Div(
        [html.H3("Alarm limits (admin)"),
         html.Div(limits_form(effective), id="limits-form"),
         dcc.Store(id="limits-form-ts", data=effective.ts if effective else None),  # what the form was filled from
         dcc.Store(id="limits-whatif-for", data=None),  # the edit whose what-if the admin has seen
         html.Button("Save limits", id="limits-save", className="btn btn-ack", n_clicks=0, disabled=effective is None),
         html.Div(id="limits-feedback", role="status", className="feedback")],
        className="panel", id="limits-panel",
    )


def current_session(services: Services, site: str, chair: str) -> Session | None:
    """Return the chair's live session, else its newest stored one (None when neither is known)."""
    state = services.state.chair_state(site, chair)
    if state is not None and state.session is not None:
        return state.session
    try:
        found = services.history.sessions(site, chair)
    except HistoryUnavailable:
        return None
    return found[-1] if found else None


def time_range(services: Services, site: str, chair: str, choice: str, now: int) -> tuple[int, int]:
    """Return the [start, end) of a range choice; 'session' spans the current or newest session."""
    if choice in RANGE_MS:
        return now - RANGE_MS[choice], now
    session = current_session(services, site, chair)
    if session is None:
        return now - RANGE_MS["1h"], now
    end = session.ended_at + 600_000 if session.ended_at else now
    return session.started_at - 300_000, min(end, now)


def session_details(session: Session | None, now: int) -> Any:
    """Return the session panel's content."""
    if session is None:
        return html.P("No session known for this chair.", className="muted")
    rows = [("session", session.session_id), ("state", session.state), ("started", clock_text(session.started_at)),
            ("drug", session.drug or "-"),
            ("dose", f"{session.dose_mg_per_kg:g} mg/kg" if session.dose_mg_per_kg is not None else "-"),
            ("planned duration", f"{session.duration_min:g} min" if session.duration_min is not None else "-"),
            ("patient ref (pseudonymous)", session.patient_ref or "-")]
    if session.state == "active":
        rows.append(("elapsed", format_elapsed(now - session.started_at)))
    elif session.ended_at:
        rows.append(("ended", clock_text(session.ended_at)))
    if session.baseline_sys is not None:
        rows.append(("baseline systolic", f"{session.baseline_sys:g} mmHg"))
    if session.weight_kg is not None:  # a nurse-started session (issue 13): weight, total dose, who started it
        rows.append(("weight", f"{session.weight_kg:g} kg"))
    if session.total_mg is not None:
        rows.append(("total dose", f"{session.total_mg:g} mg"))
    if session.started_by:
        rows.append(("started by", session.started_by))
    return html.Dl([item for key, value in rows for item in (html.Dt(key), html.Dd(value))], className="details")


def alarm_history_rows(events: list[Any]) -> list[list[Any]]:
    """Return alarm-history table rows, newest first, with who acknowledged."""
    out = []
    for e in sorted(events, key=lambda e: e.ts, reverse=True):
        value = "" if e.value is None else f"{e.value:g}"
        limit = "" if e.limit is None else f"{e.limit:g}"
        out.append([clock_text(e.ts), PRIORITY_LABEL.get(e.priority, e.priority), e.event, e.vital,
                    e.text or "", f"{value} / {limit}" if value or limit else "", e.user or ""])
    return out


def install_export(server: Any, services: Services) -> None:
    """Register GET /export/<site>/<chair>.csv?start=&end= (behind the login gate like every page)."""
    from flask import Response, abort, request

    def export(site: str, chair: str) -> Any:
        try:
            check_id(site, "site id")
            check_id(chair, "chair id")
            start = int(request.args.get("start", "0"))
            end = int(request.args.get("end", str(now_ms())))
        except (TopicError, ValueError):
            abort(400)
        if not services.may_see(site):
            abort(404)
        if end <= start or end - start > MAX_EXPORT_MS:
            return Response("range must be positive and at most 24 hours\n", 400, mimetype="text/plain")
        try:
            readings = services.history.readings(site, chair, start, end)
        except HistoryUnavailable as exc:
            return Response(f"history unavailable: {exc}\n", 503, mimetype="text/plain")
        who = services.user()
        services.audit("export_csv", who.user if who else "?", f"{start}-{end} {len(readings)} readings",
                       site=site, chair=chair)
        name = f"{site}_{chair}_{start}_{end}.csv"
        return Response(readings_csv(readings), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    server.add_url_rule("/export/<site>/<chair>.csv", "infusion_export", export, methods=["GET"])


def register(app: Dash, services: Services) -> None:
    """Register the chair view's callbacks."""

    @app.callback(Output("chair-live", "children"), Input("tick", "n_intervals"), State("chair-key", "data"))
    def chair_live(_n: int, key: dict[str, str]) -> Any:
        return live_tile(services, *chair_key(services, key))

    @app.callback(
        Output("chair-trend", "figure"), Output("chair-session", "children"), Output("chair-alarm-history", "children"),
        Output("chair-export", "href"), Output("chair-history-note", "children"), Output("chair-limits-note", "children"),
        Input("chair-range", "value"), Input("chair-trend-tick", "n_intervals"), Input("chair-limits-version", "data"),
        State("chair-key", "data"),
    )
    def chair_trend(choice: str, _n: int, _version: Any, key: dict[str, str]) -> tuple[Any, ...]:
        site, chair = chair_key(services, key)
        now = now_ms()
        start, end = time_range(services, site, chair, choice or "session", now)
        state = services.state.chair_state(site, chair)
        limits = state.effective_limits if state else None
        session = current_session(services, site, chair)
        export = f"/export/{site}/{chair}.csv?start={max(start, end - MAX_EXPORT_MS)}&end={end}"
        try:
            series = services.history.series(site, chair, start, end)
            events = services.history.alarm_events(site, chair, start, end)
            sessions = services.history.sessions(site, chair, start - 86400_000, end)
        except HistoryUnavailable as exc:
            from vitals.store import Series

            note = html.Div(f"History unavailable: {exc}. Live values above continue.", className="banner banner-warn")
            return trend_figure(Series(0), limits, start_ms=start, end_ms=end), session_details(session, now), \
                html.P("Alarm history unavailable while the store is down.", className="muted"), export, note, \
                limits_note(state)
        history = table(["time", "priority", "event", "vital", "text", "value / limit", "user"],
                        alarm_history_rows(events), ident="alarm-history-table", empty="No alarm events in this range.")
        shown = [s for s in sessions if s.started_at < end and (s.ended_at is None or s.ended_at >= start)]
        figure = record_markers(services, trend_figure(series, limits, events, shown, start, end), site, chair, shown)
        return figure, session_details(session, now), history, export, "", limits_note(state)

    @app.callback(Output("chair-limits-version", "data"), Input("tick", "n_intervals"), State("chair-key", "data"),
                  State("chair-limits-version", "data"))
    def chair_limits_version(_n: int, key: dict[str, str], shown: Any) -> Any:
        # Redraw the trend at once when the engine publishes new limits (or an edit is pending), not at the next
        # 15 s refresh: a threshold on screen must not lag the one that alarms.
        version = limits_version(services.state.chair_state(*chair_key(services, key)))
        return no_update if version == shown else version

    @app.callback(Output("limits-form", "children"), Output("limits-save", "disabled"), Output("limits-form-ts", "data"),
                  Input("chair-limits-version", "data"), State("chair-key", "data"), State("limits-form-ts", "data"),
                  prevent_initial_call=True)
    def refill_limits_form(_version: Any, key: dict[str, str], filled_from: Any) -> tuple[Any, Any, Any]:
        # Refill the admin's form when the engine published new limits, but never while an edit is pending (the
        # admin's own just-saved values would be replaced by the old ones), nor with what it already holds.
        state = services.state.chair_state(*chair_key(services, key))
        effective = state.effective_limits if state else None
        ts = effective.ts if effective else None
        if ts == filled_from or pending_edit(state.limits_edit if state else None, effective) is not None:
            return no_update, no_update, no_update
        return limits_form(effective), effective is None, ts

    @app.callback(
        Output("limits-feedback", "children"), Output("limits-whatif-for", "data"), Input("limits-save", "n_clicks"),
        State({"type": "limit", "vital": ALL, "name": ALL}, "value"), State("chair-key", "data"),
        State("limits-whatif-for", "data"), prevent_initial_call=True,
    )
    def save_limits(n_clicks: int, values: list[Any], key: dict[str, str], seen: Any) -> tuple[Any, Any]:
        if not n_clicks:
            return "", None
        who = services.user()
        if who is None or who.role != "admin":
            return "Only an admin may change alarm limits.", None
        raw: dict[str, dict[str, Any]] = {}
        for spec, value in zip(ctx.states_list[0], values, strict=False):
            ident = spec["id"]
            raw.setdefault(ident["vital"], {})[ident["name"]] = value
        try:
            checked = validate(raw)
        except LimitsError as exc:
            return f"Not saved: {exc}", None
        site, chair = chair_key(services, key)
        state = services.state.chair_state(site, chair)
        edit = admin_layer(checked, state.effective_limits if state else None)
        if not edit:
            return "Nothing changed: these are the limits the alarm engine enforces.", None
        shown = json.dumps([site, chair, edit], sort_keys=True)
        if seen != shown:  # first click: the what-if of this very edit, before anything is applied
            try:
                result = whatif.ask(services, site, chair, AdminEdit(edit).rules(), who.user)
            except RuntimeError as exc:
                return whatif.unavailable(str(exc)), shown
            return whatif.summary(result), shown
        payload = AdminEdit(edit, who.user, now_ms()).to_payload()
        if services.feed is None or not services.feed.publish_limits(site, chair, payload):
            return "Not saved: the broker did not take the new limits.", None
        stored = services.audit("alarm_limits", who.user, json.dumps(edit, sort_keys=True), site=site, chair=chair)
        log.info("alarm limits of %s/%s changed by %s", site, chair, who.user)
        pending = " The chart shows them once the alarm engine has applied them."
        return ("Saved and published." + pending if stored else
                "Published, but the audit record could not be stored (store unavailable); it is in the log." + pending,
                None)
