"""What an admin sees before applying a limits edit: the what-if of the chair's last 7 days.

The dashboard never runs the alarm engine (it does not import ingest/), so it asks the ingest over MQTT
(vitals/whatif.py, docs/mqtt-contract.md) on a short-lived connection of its own and waits for the answer. The
what-if informs, it never blocks: without an answer the admin is told so and may still apply the edit.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from dash import html

from dashboard.services import Services
from vitals.mqtt import connect, make_client, wait_connected
from vitals.whatif import WHATIF_DAYS, WhatIfRequest

# How long the admin waits for the ingest's answer (a week of one chair replays in well under a second).
ANSWER_TIMEOUT_S = 20.0
NO_MATCHING_SUBSCRIBERS = 16  # MQTT 5 PUBACK reason code


def ask(services: Services, site: str, chair: str, rules: dict[str, dict[str, Any]], user: str,
        timeout_s: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
    """Ask the ingest for the what-if of a chair's rule overrides; return its result or raise RuntimeError why not."""
    config = services.config
    if not config.mqtt_url:
        raise RuntimeError("no broker configured")
    request = WhatIfRequest.new(site, chair, rules, user, WHATIF_DAYS)
    answer: dict[str, Any] = {}
    got = threading.Event()
    subscribed = threading.Event()
    published = threading.Event()
    puback: list[Any] = []
    client, target = make_client(config.mqtt_url, f"dashboard-whatif-{request.request_id[:12]}",
                                 protocol=config.mqtt_protocol, ca_file=config.mqtt_ca_file,
                                 cert_file=config.mqtt_cert_file, key_file=config.mqtt_key_file)

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        try:
            answer.update(json.loads(msg.payload))
        except ValueError:
            answer.update({"ok": False, "error": "the answer was not JSON"})
        got.set()

    def on_publish(_c: Any, _u: Any, _mid: int, reason_code: Any, _p: Any = None) -> None:
        puback.append(reason_code)
        published.set()

    client.on_message = on_message
    client.on_subscribe = lambda *_a, **_k: subscribed.set()
    client.on_publish = on_publish
    connect(client, target)
    client.loop_start()
    try:
        if not wait_connected(client, 5):
            raise RuntimeError("the broker did not answer")
        client.subscribe(services.topics.whatif_response(site, request.request_id), qos=1)
        if not subscribed.wait(5):
            raise RuntimeError("the broker did not confirm the subscription")
        client.publish(services.topics.whatif_request(site), request.to_payload(), qos=1)
        # MQTT 5: a broker that knows no subscriber says so in the PUBACK (16), so a missing ingest is told at once.
        if published.wait(5) and puback and getattr(puback[0], "value", 0) == NO_MATCHING_SUBSCRIBERS:
            raise RuntimeError("no ingest is answering what-if requests (none subscribed)")
        if not got.wait(timeout_s):
            raise RuntimeError(f"no answer from the ingest within {timeout_s:g} s (is it running with alarms?)")
    finally:
        client.disconnect()
        client.loop_stop()
    if not answer.get("ok"):
        raise RuntimeError(str(answer.get("error") or "the ingest refused the request"))
    return dict(answer["result"])


def summary(result: dict[str, Any]) -> html.Div:
    """Return the what-if for people: alarms now and with the edit, what it removes, adds and delays."""
    cur, alt = result["current"], result["alternative"]
    replayed = result["replayed"]
    since = replayed.get("from") or result["since"]
    items: list[Any] = [
        html.P([html.B("What-if before applying: "),
                f"replaying this chair's history since {since} ({replayed['readings']} readings, "
                f"{replayed['chair_hours']:g} chair-hours) through the alarm engine:"]),
        html.Table(html.Tbody([
            html.Tr([html.Th(""), html.Th("limits in force"), html.Th("with this edit")]),
            html.Tr([html.Td("alarms"), html.Td(str(cur["alarms"]), id="whatif-current"),
                     html.Td(str(alt["alarms"]), id="whatif-alternative")]),
            html.Tr([html.Td("per chair-hour"), html.Td(str(cur["per_chair_hour"] if cur["per_chair_hour"] is not None
                                                           else "–")),
                     html.Td(str(alt["per_chair_hour"] if alt["per_chair_hour"] is not None else "–"))]),
        ]), className="data-table"),
        html.P(f"Removed {len(result['removed'])}, added {len(result['added'])}, delayed {len(result['delayed'])}.",
               id="whatif-changes"),
    ]
    suppressed = result["actionable_suppressed"]
    if suppressed:
        items.append(html.Div(
            [html.B(f"{len(suppressed)} alarm(s) staff tagged ACTIONABLE would be suppressed or delayed:"),
             html.Ul([html.Li(f"{s['key']} at {s['since']}: {s['change']}"
                              + (f" by {s['delay_s']:g} s" if s.get("delay_s") else "")) for s in suppressed])],
            className="banner banner-warn", id="whatif-actionable"))
    if not replayed["readings"]:
        items.append(html.P("No stored history for this chair yet: the what-if has nothing to replay.", className="muted"))
    items.append(html.P("Click \u201cSave limits\u201d again to apply these limits.", id="whatif-confirm"))
    return html.Div(items, className="whatif-box", id="whatif-box")


def unavailable(reason: str) -> html.Div:
    """Return the note shown when no what-if could be had (the edit may still be applied)."""
    return html.Div([html.P(f"What-if unavailable: {reason}.", className="banner banner-warn"),
                     html.P("Click \u201cSave limits\u201d again to apply these limits anyway.", id="whatif-confirm")],
                    className="whatif-box", id="whatif-box")
