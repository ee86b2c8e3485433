"""The overview's push channel (dashboard/push.py): login, site scope, thread limit, change-driven events.

In process through Flask's test client (a streamed response read event by event), no browser; the browser side
(NO DATA on time when pushes stop, the poll fallback) is in test_push_browser.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dashboard.push import PUSH_PATH, RESERVED_THREADS, stream_limit
from dashboard.state import ChairState, tile_view
from tests.dashboard.scene import now_ms
from tests.dashboard.test_security import NORTH, SOUTH, login, make_client, users_file  # noqa: F401 - fixture
from vitals.reading import validate_payload


def events(response: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (event name, data) from a streamed event-stream response as they come."""
    buffer = ""
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "data" in fields:
                yield fields.get("event", "message"), json.loads(fields["data"])


def publish(client: Any, site: str, chair: str, hr: float) -> None:
    client.services.state.apply_payload(site, chair, json.dumps({"ts": now_ms(), "hr": hr, "spo2": 97}).encode())


def test_the_stream_needs_a_login_and_answers_401_not_a_login_page(users_file: Path) -> None:  # noqa: F811
    client = make_client(users_file)
    response = client.get(PUSH_PATH)
    assert response.status_code == 401
    assert b"c-01" not in response.data


def test_a_south_user_never_receives_north_values(users_file: Path) -> None:  # noqa: F811
    client = make_client(users_file)
    assert login(client, "nurse.south").status_code == 303
    response = client.get(PUSH_PATH, buffered=False)
    try:
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-store"
        stream = events(response)
        name, first = next(stream)
        assert name == "tiles" and first["full"] is True
        assert [t["site"] for t in first["tiles"]] == [SOUTH]
        assert first["summary"] == [1, 1, 0, 1]
        # North changes (a new chair, a new value); south changes once: only south's change is ever sent.
        publish(client, NORTH, "c-01", 131)
        publish(client, NORTH, "c-09", 132)
        publish(client, SOUTH, "c-01", 133)
        name, second = next(stream)
        assert name == "tiles" and second["full"] is False
        # Only what changed travels: the tile's id, its numbers and its deadline.
        assert [(t["id"], t["nums"][0][3]) for t in second["tiles"]] == [(f"tile-{SOUTH}--c-01", "133")]
        assert "session" not in second["tiles"][0] and "href" not in second["tiles"][0]
        text = json.dumps(first) + json.dumps(second)
        assert NORTH not in text and "c-09" not in text
        # North's values, looked for among the values shown (as text, a timestamp may hold the digits "131").
        shown = {num[3] for tile in first["tiles"] + second["tiles"] for num in tile["nums"]}
        assert shown.isdisjoint({"131", "132"}) and "133" in shown
        # A live tile carries its deadlines on the server's clock, so the page can turn it NO DATA by itself.
        tile = second["tiles"][0]
        assert second["now"] < tile["liveUntil"] <= second["now"] + second["noDataMs"]
        assert tile["nums"][0][6] == tile["liveUntil"]
    finally:
        response.close()


def test_the_stream_ends_when_the_login_ends(users_file: Path) -> None:  # noqa: F811
    client = make_client(users_file)
    login(client, "nurse.kim")
    response = client.get(PUSH_PATH, buffered=False)
    try:
        stream = events(response)
        assert next(stream)[0] == "tiles"
        client.services.gate.sessions.end_user("nurse.kim")  # signed out elsewhere, or the user was removed
        names = [name for name, _ in stream]  # the stream ends by itself: the loop ends
        assert names[-1] == "ended"
    finally:
        response.close()


def test_streams_are_limited_to_the_threads_left_for_requests(users_file: Path) -> None:  # noqa: F811
    assert stream_limit(RESERVED_THREADS + 1) == 1 and stream_limit(RESERVED_THREADS) == 0
    client = make_client(users_file, dashboard_threads=RESERVED_THREADS + 1)
    login(client, "nurse.kim")
    first = client.get(PUSH_PATH, buffered=False)
    busy = client.get(PUSH_PATH, buffered=False)
    assert first.status_code == 200 and busy.status_code == 503  # that page keeps its poll
    assert busy.headers["Retry-After"]
    busy.close()
    first.close()  # the server closing the response gives its thread back
    again = client.get(PUSH_PATH, buffered=False)
    assert again.status_code == 200
    again.close()
    assert client.get("/_dash-layout").status_code == 200  # requests still answered


def test_no_push_turns_the_channel_off(users_file: Path) -> None:  # noqa: F811
    client = make_client(users_file, dashboard_no_push=True)
    login(client, "nurse.kim")
    assert client.get(PUSH_PATH).status_code == 404
    from dashboard.pages import overview

    assert overview.layout(client.services).to_plotly_json()["props"]["data-push"] == ""


def test_deadlines_follow_the_value_time_and_the_arrival() -> None:
    state = ChairState("s", "c")
    now = now_ms()
    late = validate_payload("s", "c", json.dumps({"ts": now - 4_000, "hr": 80, "spo2": 97}).encode(), now)
    state.apply_reading(late.readings[0], now)  # delivered 4 s late: as old as its timestamp says
    view = tile_view(state, now, no_data_ms=15_000)
    assert view.mode == "live" and view.live_until == now - 4_000 + 15_000
    assert [n.stale_at for n in view.numerics] == [now + 11_000, now + 11_000, None]
    assert tile_view(state, now + 11_001, no_data_ms=15_000).live_until is None  # NO DATA: nothing to wait for
