"""Browser fixtures of test_browser.py, shared with test_browser_security.py."""

from tests.dashboard.test_browser import browser, dashboard, publisher  # noqa: F401 - fixtures
