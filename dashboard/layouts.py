"""The page shell (header, banners, refresh tick, sound) and the router that fills it with a page."""

from __future__ import annotations

from typing import Any

from dash import ClientsideFunction, Dash, Input, Output, State, dcc, html

from dashboard.components import banner, clock_text
from dashboard.live import now_ms
from dashboard.services import Services


def shell(services: Services) -> html.Div:
    """Return the layout every page shares; built per request, so it names the logged-in user."""
    who = services.user()
    user_bits: list[Any] = []
    if who is not None:
        user_bits.append(html.Span(f"{who.user} ({who.role})", className="who", id="who"))
    if who is not None and not services.config.dashboard_no_login:
        # A POST carrying the session's CSRF token: no link or page elsewhere can sign this station out.
        user_bits.append(html.Form(html.Button("Sign out", type="submit", name="csrf", value=who.csrf, id="logout",
                                               className="nav-link btn-link"),
                                   method="post", action="/logout", className="logout-form"))
    static_banners = []
    if services.config.dashboard_no_login:
        static_banners.append(banner(
            "LOGIN DISABLED: this dashboard runs with --no-login on a loopback address; "
            f"actions are recorded as '{who.user if who else 'station'}'.", "warn", "no-login-banner"))
    return html.Div(
        [
            dcc.Location(id="url", refresh=False),
            dcc.Interval(id="tick", interval=services.config.dashboard_refresh_ms, n_intervals=0),
            dcc.Store(id="sound-state", data={"sounding": 0}),
            dcc.Store(id="sound-enabled", storage_type="local", data=False),
            html.Header(
                [
                    dcc.Link("Infusion monitor", href="/", className="brand"),
                    html.Nav(
                        [dcc.Link("Overview", href="/", className="nav-link", id="nav-overview"),
                         dcc.Link(["Alarms ", html.Span("0", id="nav-alarm-count", className="count count-none")],
                                  href="/alarms", className="nav-link", id="nav-alarms"),
                         dcc.Link("Report", href="/report", className="nav-link", id="nav-report")],
                        className="nav",
                    ),
                    html.Div(
                        [html.Button("Sound off", id="sound-toggle", className="btn btn-sound", n_clicks=0,
                                     title="Play a sound in this browser for high-priority alarms"),
                         html.Span(id="sound-indicator", className="sound-indicator"),
                         html.Span(clock_text(now_ms()), id="clock", className="clock"), *user_bits],
                        className="topbar-right",
                    ),
                ],
                className="topbar",
            ),
            html.Div(static_banners, id="static-banners"),
            html.Div(id="banners"),
            html.Main(id="page", className="page"),
            html.Footer("A secondary display and alerting aid, not a certified medical device.", className="footer"),
        ],
        className="app",
    )


def link_banners(services: Services, at: int) -> list[html.Div]:
    """Return the banners about the broker and the store (live view lost, history unavailable, bad alarm state)."""
    out = []
    links = services.state.links()
    if services.feed is not None and not links.broker_connected:
        since = clock_text(links.broker_down_since) if links.broker_down_since else "start"
        out.append(banner(f"NO CONNECTION TO THE BROKER since {since}: values and alarms on this screen are "
                          "NOT live. Check the network and the broker.", "danger", "broker-banner"))
    if not links.store_available:
        since = clock_text(links.store_down_since) if links.store_down_since else "start"
        out.append(banner(f"History unavailable (store not answering since {since}): live values continue; trends, "
                          "sparkline history and alarm history are not shown.", "warn", "store-banner"))
    for site, chair, error in services.state.alarm_errors(services.scope()):
        out.append(banner(f"Chair {chair} ({site}): {error}", "danger"))
    return out


def register(app: Dash, services: Services, pages: dict[str, Any]) -> None:
    """Register the router, the shell's per-second callback and the sound callbacks."""

    @app.callback(Output("page", "children"), Input("url", "pathname"), State("url", "search"))
    def route(pathname: str | None, search: str | None) -> Any:
        path = pathname or "/"
        if path in ("/", ""):
            return pages["overview"].layout(services)
        if path == "/alarms":
            return pages["alarms"].layout(services)
        if path == "/report":
            return pages["report"].layout(services)
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "chair" and services.may_see(parts[1]):
            return pages["chair"].layout(services, parts[1], parts[2])
        return html.Div([html.H2("Not found"), dcc.Link("Back to the overview", href="/")], className="panel")

    @app.callback(
        Output("banners", "children"), Output("nav-alarm-count", "children"), Output("nav-alarm-count", "className"),
        Output("sound-state", "data"), Output("clock", "children"),
        Input("tick", "n_intervals"),
    )
    def shell_tick(_n: int) -> tuple[Any, ...]:
        at = now_ms()
        scope = services.scope()
        alarms = services.state.active_alarms(scope)
        top = alarms[0][2].priority if alarms else "none"
        return (link_banners(services, at), str(len(alarms)), f"count count-{top}",
                {"sounding": services.state.sounding_count(scope),
                 "brokerLost": services.feed is not None and not services.state.links().broker_connected},
                clock_text(at))

    app.clientside_callback(
        ClientsideFunction(namespace="vitals", function_name="toggleSound"),
        Output("sound-enabled", "data"), Input("sound-toggle", "n_clicks"), State("sound-enabled", "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction(namespace="vitals", function_name="soundLabel"),
        Output("sound-toggle", "children"), Input("sound-enabled", "data"),
    )
    app.clientside_callback(
        ClientsideFunction(namespace="vitals", function_name="sound"),
        Output("sound-indicator", "children"), Input("sound-state", "data"), State("sound-enabled", "data"),
    )
