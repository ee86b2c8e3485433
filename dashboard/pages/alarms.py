"""The alarm panel: standing alarms by priority then age; acknowledge and audio-pause send the documented command.

The dashboard never decides alarm state: a button publishes an AckCommand on the chair's ack topic with the
logged-in user, the ingest's alarm engine acts on it (and records it in the audit trail), and the retained
alarms topic brings the new state back here.
"""

from __future__ import annotations

import logging
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html

from dashboard.components import PRIORITY_LABEL, chair_href, clock_text
from dashboard.live import now_ms
from dashboard.services import Services
from dashboard.state import format_age
from vitals.records import ACTIONABILITY, ACTIONABILITY_LABEL, MAX_REASON, AckCommand

log = logging.getLogger("dashboard.alarms")


def layout(services: Services) -> html.Div:
    """Return the alarm panel page."""
    return html.Div(
        [
            html.H2("Active alarms"),
            html.P("Ordered by priority, unacknowledged first, then oldest first. Acknowledge silences an alarm's "
                   "notifications and sound; audio pause silences a chair's sound for 2 minutes.", className="muted"),
            html.Div(id="alarms-feedback", className="feedback", role="status"),
            html.Div([html.Label("Reason (optional, sent with the next acknowledgement):", htmlFor="ack-reason"),
                      dcc.Input(id="ack-reason", type="text", maxLength=MAX_REASON, debounce=False,
                                placeholder="e.g. probe off, patient moving", className="ack-reason")],
                     className="ack-reason-row"),
            html.Div(rows(services), id="alarms-list"),
        ],
        className="panel", id="alarms-page",
    )


def rows(services: Services, now: int | None = None) -> list[Any]:
    """Return one row per standing alarm."""
    at = now_ms() if now is None else now
    items = services.state.active_alarms(services.scope())
    if not items:
        return [html.P("No active alarms.", className="muted", id="alarms-none")]
    out = []
    for site, chair, alarm in items:
        state_bits = []
        if not alarm.condition_active:
            state_bits.append("condition cleared (latched)")
        if alarm.acknowledged:
            state_bits.append(f"acknowledged by {alarm.acknowledged_by or '?'}")
        if alarm.audio_paused_until and alarm.audio_paused_until > at:
            state_bits.append(f"audio paused {max(0, (alarm.audio_paused_until - at) // 1000)} s")
        buttons = []
        if not alarm.acknowledged:
            buttons.append(html.Button("Acknowledge", className="btn btn-ack", n_clicks=0,
                                       id={"type": "ack-btn", "site": site, "chair": chair, "alarm": alarm.alarm_id}))
            # One click acknowledges and says whether the alarm called for action (optional: plain Acknowledge).
            buttons += [html.Button(f"Ack: {ACTIONABILITY_LABEL[tag]}", className=f"btn btn-tag btn-tag-{tag}",
                                    n_clicks=0, title=f"Acknowledge, and record that this alarm was {ACTIONABILITY_LABEL[tag]}",
                                    id={"type": "ack-tag-btn", "site": site, "chair": chair, "alarm": alarm.alarm_id,
                                        "tag": tag})
                        for tag in ACTIONABILITY]
        buttons.append(html.Button("Pause audio", className="btn btn-pause", n_clicks=0,
                                   id={"type": "pause-btn", "site": site, "chair": chair, "alarm": alarm.alarm_id}))
        out.append(html.Div(
            [
                html.Span(PRIORITY_LABEL.get(alarm.priority, alarm.priority), className="alarm-prio"),
                dcc.Link(chair, href=chair_href(site, chair), className="alarm-chair"),
                html.Span(alarm.text, className="alarm-text"),
                html.Span(f"since {clock_text(alarm.since)} ({format_age(at - alarm.since)})", className="alarm-age"),
                html.Span(" · ".join(state_bits), className="alarm-state"),
                html.Div(buttons, className="alarm-buttons"),
            ],
            className=f"alarm-row alarm-{alarm.priority}{' acked' if alarm.acknowledged else ''}",
            **{"data-alarm-id": alarm.alarm_id, "data-chair": chair},
        ))
    return out


def send(services: Services, site: str, chair: str, alarm_id: str, action: str, actionable: str | None = None,
         reason: str | None = None) -> str:
    """Publish an acknowledge or audio-pause command for a standing alarm; return what to tell the user.

    ``actionable`` and ``reason`` (acknowledge only) are the optional tag; they never hold the command back.
    """
    who = services.user()
    if who is None:
        return "Not signed in."
    if not any(a.alarm_id == alarm_id for s, c, a in services.state.active_alarms(services.scope()) if (s, c) == (site, chair)):
        return "That alarm is no longer active."
    if services.feed is None:
        return "No broker configured: the command was not sent."
    acking = action == "acknowledge"
    tag = actionable if acking and actionable in ACTIONABILITY else None
    text = " ".join(str(reason).split())[:MAX_REASON] if acking and reason else None
    command = AckCommand(site=site, chair=chair, alarm_id=alarm_id if acking else None,
                         user=who.user, action=action, actionable=tag, reason=text or None)
    ok = services.feed.publish_ack(command)
    log.info("%s %s/%s %s by %s: %s", action, site, chair, alarm_id, who.user, "sent" if ok else "NOT sent")
    if not ok:
        return f"NOT SENT: the broker did not take the {action.replace('_', ' ')} command. Try again."
    verb = "Acknowledgement" if action == "acknowledge" else "Audio pause"
    said = f" ({', '.join(x for x in (ACTIONABILITY_LABEL[tag] if tag else '', text or '') if x)})" if tag or text else ""
    return f"{verb}{said} sent for chair {chair} by {who.user}."


def register(app: Dash, services: Services) -> None:
    """Register the panel's refresh and its buttons."""

    @app.callback(Output("alarms-list", "children"), Input("tick", "n_intervals"))
    def alarms_tick(_n: int) -> list[Any]:
        return rows(services)

    @app.callback(
        Output("alarms-feedback", "children"), Output("ack-reason", "value"),
        Input({"type": "ack-btn", "site": ALL, "chair": ALL, "alarm": ALL}, "n_clicks"),
        Input({"type": "pause-btn", "site": ALL, "chair": ALL, "alarm": ALL}, "n_clicks"),
        Input({"type": "ack-tag-btn", "site": ALL, "chair": ALL, "alarm": ALL, "tag": ALL}, "n_clicks"),
        State("ack-reason", "value"),
        prevent_initial_call=True,
    )
    def alarm_button(_acks: list[int | None], _pauses: list[int | None], _tags: list[int | None],
                     reason: str | None) -> Any:
        trigger = ctx.triggered_id
        if not isinstance(trigger, dict) or not any(t.get("value") for t in ctx.triggered):
            return no_change(), no_change()
        action = "pause_audio" if trigger.get("type") == "pause-btn" else "acknowledge"
        tag = str(trigger.get("tag")) if trigger.get("type") == "ack-tag-btn" else None
        said = send(services, str(trigger["site"]), str(trigger["chair"]), str(trigger["alarm"]), action, tag,
                    reason if isinstance(reason, str) else None)
        # The reason went with this acknowledgement: cleared, so it is never sent with the next one by mistake.
        return said, "" if action == "acknowledge" and said.startswith("Acknowledgement") else no_change()


def no_change() -> Any:
    """Return Dash's no-update marker."""
    from dash import no_update

    return no_update
