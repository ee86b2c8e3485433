"""The ingest answers what-if requests (vitals/whatif.py): the dashboard's preview of a limits edit.

Its own MQTT connection (QoS 1, clean session: a request nobody answered in time is not worth answering after a
restart) and one worker thread, so a replay never holds up readings or alarms. Requests wait in a short queue;
when it is full the request is answered at once with an error. The replay covers the chair alone: the rules in
force (the rules file and every admin edit the engine applies) against the same with the requested overrides.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any

import paho.mqtt.client as paho

from vitals.mqtt import connect, make_client
from vitals.records import RecordError
from vitals.settings import Settings
from vitals.store import Store
from vitals.topics import Topics
from vitals.whatif import WhatIfRequest, response_payload

from .rules import RulesError, chair_overrides
from .service import AlarmService, wall_ms
from .whatif import whatif

log = logging.getLogger("ingest.whatif")
QUEUE = 4


class WhatIfResponder:
    """Answers ``{prefix}/{site}/whatif/request`` on ``.../whatif/response/{id}`` with a replay of the chair."""

    def __init__(self, settings: Settings, alarms: AlarmService, store: Store, *, client_id: str) -> None:
        self.settings = settings
        self.alarms = alarms
        self.store = store
        self.topics = Topics(settings.topic_prefix)
        self._queue: queue.Queue[WhatIfRequest | None] = queue.Queue(QUEUE)
        self.client, self.target = make_client(
            settings.mqtt_url, f"{client_id}-whatif", protocol=settings.mqtt_protocol, ca_file=settings.mqtt_ca_file,
            cert_file=settings.mqtt_cert_file, key_file=settings.mqtt_key_file)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._worker = threading.Thread(target=self._work, name="whatif", daemon=True)
        self.answered = 0

    def start(self) -> None:
        """Connect and start the worker."""
        self._worker.start()
        connect(self.client, self.target)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect and let the worker end."""
        self._queue.put(None)
        self.client.disconnect()
        self.client.loop_stop()
        self._worker.join(5)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topics.whatif_request_filter(self.settings.site), qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        site = msg.topic[len(self.topics.prefix) + 1:].split("/", 1)[0]
        try:
            request = WhatIfRequest.from_payload(site, msg.payload)
        except RecordError as exc:
            log.warning("what-if request on %s refused: %s", msg.topic, exc)
            try:
                rid = json.loads(msg.payload).get("request_id")
                self._answer(site, str(rid), error=str(exc))
            except Exception:  # no usable id: nobody to answer
                pass
            return
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            self._answer(site, request.request_id, error="the ingest is busy with other what-if requests; try again")

    def _answer(self, site: str, request_id: str, result: dict[str, Any] | None = None,
                error: str | None = None) -> None:
        try:
            topic = self.topics.whatif_response(site, request_id)
        except ValueError:
            return
        self.client.publish(topic, response_payload(request_id, result, error), qos=1)

    def _work(self) -> None:
        while (request := self._queue.get()) is not None:
            try:
                result = self.compute(request)
                self._answer(request.site, request.request_id, result=result)
            except (RulesError, ValueError) as exc:
                self._answer(request.site, request.request_id, error=str(exc))
            except Exception as exc:  # the worker must outlive one bad replay, and say so
                log.exception("what-if %s failed", request.request_id)
                self._answer(request.site, request.request_id, error=f"the replay failed: {type(exc).__name__}")
            self.answered += 1

    def compute(self, request: WhatIfRequest) -> dict[str, Any]:
        """Return the what-if of a request: the chair's last ``days`` under the rules in force and with the edit."""
        book = self.alarms.book
        overrides = chair_overrides(book, request.site, request.rules, f"what-if of {request.site}/{request.chair}")
        with self.alarms._lock:  # a consistent copy of the admin edits the engine applies now
            admin = self.alarms.engine.admin_overrides()
        until = wall_ms()
        since = until - round(request.days * 86_400_000)
        result = whatif(self.store, book, book, since_ms=since, until_ms=until, site=request.site, chair=request.chair,
                        config=self.alarms.engine.config, current_chair=admin,
                        alternative_chair={(request.site, request.chair): overrides})
        log.info("what-if %s of %s/%s for %s: %d alarms now, %d with the edit (%d readings in %.2f s)",
                 request.request_id, request.site, request.chair, request.user or "?", result["current"]["alarms"],
                 result["alternative"]["alarms"], result["replayed"]["readings"], result["replayed"]["seconds"])
        return result


def start_whatif(settings: Settings, service: Any) -> WhatIfResponder | None:
    """Start answering what-if requests for an IngestService that evaluates alarms (None when it does not)."""
    if getattr(service, "alarms", None) is None or not settings.mqtt_url:
        return None
    responder = WhatIfResponder(settings, service.alarms, service.store, client_id=service.client_id)
    responder.start()
    return responder
