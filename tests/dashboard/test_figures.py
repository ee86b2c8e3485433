"""Pure figure builders: sparklines and trends."""

from __future__ import annotations

from urllib.parse import unquote

from dashboard.figures import PRIORITY_COLOURS, label, sparkline_svg, svg_data_uri, trend_figure
from ingest.alarms.rules import effective_limits, load_rules
from vitals.limits import EffectiveLimits
from vitals.records import AlarmEvent, Session
from vitals.store import Series

T0 = 1_795_568_400_000
SHIPPED = EffectiveLimits("north", "c-01", T0, **effective_limits(load_rules(), "north", "c-01"))
WINDOW = 15 * 60_000


def test_sparkline_draws_both_series_and_breaks_at_gaps() -> None:
    hr = [(T0 - WINDOW + k * 5000, 70.0 + k % 3) for k in range(60)] + [(T0 - 60_000 + k * 5000, 80.0) for k in range(12)]
    spo2 = [(T0 - 30_000, 97.0), (T0 - 25_000, 96.0)]
    svg = sparkline_svg(hr, spo2, T0)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<path") == 3  # HR in two pieces around the gap, SpO2 in one
    assert "#33e07a" in svg and "#6aa8ff" in svg


def test_sparkline_stale_is_grey_and_empty_is_valid() -> None:
    svg = sparkline_svg([(T0 - 1000, 70.0), (T0, 71.0)], [], T0, stale=True)
    assert "#7a7a7a" in svg and "#33e07a" not in svg
    empty = sparkline_svg([], [], T0)
    assert "<path" not in empty
    assert unquote(svg_data_uri(empty).split(",", 1)[1]) == empty.replace('"', "'")


def test_sparkline_ignores_points_outside_the_window() -> None:
    svg = sparkline_svg([(T0 - WINDOW - 10_000, 70.0), (T0 + 10_000, 70.0)], [], T0)
    assert "<path" not in svg


def test_trend_figure_has_limits_events_and_sessions() -> None:
    times = [T0 + k * 60_000 for k in range(10)]
    series = Series(60_000, times, mean={"hr": [70.0] * 10, "spo2": [97.0] * 10, "sys": [None] * 9 + [130.0]},
                    low={"hr": [65.0] * 10}, high={"hr": [75.0] * 10})
    events = [AlarmEvent("a1", "north", "c-01", "spo2", "physiological", "high", "raised", 83.0, 85.0, T0 + 120_000),
              AlarmEvent("a1", "north", "c-01", "spo2", "physiological", "high", "acknowledged", None, None,
                         T0 + 180_000, user="nurse.kim")]
    sessions = [Session("north", "c-01", "S", "ended", T0, ended_at=T0 + 540_000)]
    fig = trend_figure(series, SHIPPED, events, sessions, T0, T0 + 600_000)
    shapes = fig.layout.shapes
    hlines = [s for s in shapes if s.y0 == s.y1 and str(s.xref).endswith("domain")]
    assert {(round(s.y0), s.yref) for s in hlines} >= {(40, "y"), (140, "y"), (85, "y2"), (90, "y2"), (8, "y3"),
                                                      (30, "y3"), (80, "y4"), (180, "y4"), (110, "y4")}
    markers = [t for t in fig.data if t.mode == "markers"]
    assert len(markers) == 1
    assert list(markers[0].marker.color) == [PRIORITY_COLOURS["high"]] * 2
    assert any("by nurse.kim" in text for text in markers[0].text)
    assert list(markers[0].y) == [83.0, 83.0]  # the acknowledgement sits at its alarm's value
    assert any(t.fill == "tonexty" for t in fig.data)  # min/max band when downsampled
    vlines = [s for s in shapes if s.x0 == s.x1 and str(s.yref).endswith("domain")]
    assert len(vlines) == 2 * 4  # session start and end, on every panel


def test_trend_figure_with_no_data_is_still_a_figure() -> None:
    fig = trend_figure(Series(0), SHIPPED)
    assert len(fig.data) == 0 and fig.layout.template.layout.paper_bgcolor


def test_texts_from_mqtt_and_the_store_reach_plotly_labels_escaped() -> None:
    assert label("<a href=x>n</a> & <b>b</b>") == "&lt;a href=x&gt;n&lt;/a&gt; &amp; &lt;b&gt;b&lt;/b&gt;"
    events = [AlarmEvent("a1", "north", "c-01", "hr", "physiological", "high", "raised", 150.0, 140.0, T0,
                         text="HR <b>150</b>"),
              AlarmEvent("a1", "north", "c-01", "hr", "physiological", "high", "acknowledged", None, None, T0 + 1000,
                         user="<a href=x>n</a>")]
    published = EffectiveLimits("north", "c-01", T0, {"hr": {"high_high": 140.0}},
                                {"hr-high-high": {"vital": "hr", "limit": 140.0, "priority": "high"}})
    fig = trend_figure(Series(0), published, events, (), T0, T0 + 60_000)
    texts = [t for trace in fig.data if trace.text is not None for t in trace.text]
    assert texts == ["raised high: HR &lt;b&gt;150&lt;/b&gt;", "acknowledged high: hr by &lt;a href=x&gt;n&lt;/a&gt;"]
    assert all("<" not in a.text for a in fig.layout.annotations if a.text)


def test_trend_figure_draws_only_published_limits_in_their_engine_priority() -> None:
    assert trend_figure(Series(0), None).layout.shapes == ()  # nothing published: no lines, never a default guess
    overridden = EffectiveLimits("north", "c-01", T0, {"spo2": {"low_medium": 88.0}},
                                 {"spo2-low-medium": {"vital": "spo2", "limit": 88.0, "priority": "high"}})
    fig = trend_figure(Series(0), overridden)
    [line] = fig.layout.shapes
    assert (line.y0, line.yref, line.line.color) == (88.0, "y2", PRIORITY_COLOURS["high"])
    assert [a.text for a in fig.layout.annotations if a.text == "88"] == ["88"]


def test_an_alarm_mark_is_inside_its_panel_even_with_no_limits_drawn() -> None:
    series = Series(0, times=[T0, T0 + 60_000], mean={"hr": [72.0, 74.0]})
    events = [AlarmEvent("a1", "north", "c-01", "hr", "physiological", "medium", "raised", 125.0, 120.0, T0)]
    fig = trend_figure(series, None, events, (), T0, T0 + 60_000)
    lo, hi = fig.layout.yaxis.range  # the HR panel
    assert lo < 72 and hi > 125
