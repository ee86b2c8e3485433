"""The live feed against a real broker: retained state on connect, and a lost broker said loudly."""

from __future__ import annotations

import json
import time

import pytest

from dashboard.layouts import link_banners
from dashboard.services import Services
from tests.dashboard.scene import TOPICS, now_ms, session
from tests.servers import Mosquitto
from vitals.mqtt import connect, make_client, wait_connected
from vitals.settings import FixedSettings

pytestmark = pytest.mark.integration


def wait(predicate, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_retained_state_arrives_on_connect_and_a_lost_broker_is_a_banner(own_mosquitto: Mosquitto, site: str) -> None:
    client, target = make_client(own_mosquitto.url)
    connect(client, target)
    client.loop_start()
    assert wait_connected(client, 10)
    client.publish(TOPICS.session(site, "c-01"), session("c-01", now_ms() - 60_000), qos=1, retain=True).wait_for_publish(5)
    client.publish(TOPICS.status(site, "c-02"), "offline", qos=1, retain=True).wait_for_publish(5)
    alarms = [{"alarm_id": "a1", "vital": "spo2", "kind": "physiological", "priority": "high", "since": now_ms(),
               "text": "SpO2 83 % < 85 %"}]
    client.publish(TOPICS.alarms(site, "c-03"), json.dumps(alarms), qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()

    services = Services(FixedSettings(mqtt_url=own_mosquitto.url, store_url=None, dashboard_no_login=True, site=site))
    services.start()
    try:
        assert wait(lambda: len(services.state.chairs()) == 3)
        views = {v.chair: v for v in services.state.tiles(site)}
        assert views["c-01"].session_state == "active" and views["c-02"].mode == "offline"
        assert views["c-03"].alarm_priority == "high"
        assert not any("NO CONNECTION" in str(b.children) for b in link_banners(services, now_ms()))

        own_mosquitto.stop()
        assert wait(lambda: not services.state.links().broker_connected)
        banners = link_banners(services, now_ms())
        assert any("NO CONNECTION TO THE BROKER" in str(b.children) for b in banners)
        own_mosquitto.start()
        assert wait(lambda: services.state.links().broker_connected, timeout=45)  # reconnect backoff
        assert not any("NO CONNECTION" in str(b.children) for b in link_banners(services, now_ms()))
    finally:
        services.stop()


def test_a_site_dashboards_live_feed_takes_nothing_of_another_site(mosquitto: Mosquitto, site: str) -> None:
    other = site + "-x"
    services = Services(FixedSettings(mqtt_url=mosquitto.url, store_url=None, dashboard_no_login=True, site=site))
    services.start()
    client, target = make_client(mosquitto.url)
    connect(client, target)
    client.loop_start()
    try:
        assert wait_connected(client, 10) and wait(lambda: services.state.links().broker_connected)
        for s in (other, site):  # the other site first: by the time ours arrives, theirs has had every chance
            client.publish(TOPICS.vitals(s, "c-01"), json.dumps({"ts": now_ms(), "hr": 70}), qos=1).wait_for_publish(5)
            client.publish(TOPICS.alarms(s, "c-02"), json.dumps([{"alarm_id": "a1", "vital": "hr", "kind": "physiological",
                                                                  "priority": "high", "since": now_ms(), "text": "HR"}]),
                           qos=1).wait_for_publish(5)
            client.publish(f"{TOPICS.prefix}/{s}/chair/c-01/limits", json.dumps({"limits": {}}), qos=1).wait_for_publish(5)
        assert wait(lambda: len(services.state.chairs()) == 2)
        time.sleep(0.5)
        assert services.state.chairs() == [(site, "c-01"), (site, "c-02")]
        assert [s for s, _, _ in services.state.active_alarms()] == [site]
    finally:
        client.disconnect()
        client.loop_stop()
        services.stop()
