"""Container healthcheck: exit 0 when the service's health URL answers 2xx, else 1 (stdlib only).

The URL is $HEALTHCHECK_URL, by default the ingest's http://127.0.0.1:$INFUSION_HTTP_PORT/healthz
(INFUSION_HTTP_PORT defaults to 9108, as in vitals/settings.py). The ingest answers 503 while it is not
connected to the broker, so "unhealthy" means what a person would mean by it.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0  # below the compose healthcheck timeout (5 s), so a hung service reads as unhealthy, not as a timeout


def health_url(env: dict[str, str]) -> str:
    """Return the URL to probe from the environment."""
    return env.get("HEALTHCHECK_URL") or f"http://127.0.0.1:{env.get('INFUSION_HTTP_PORT') or 9108}/healthz"


def check(url: str, timeout: float = TIMEOUT_S) -> tuple[bool, str]:
    """Return whether the URL answers 2xx, and a line saying what it answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300, f"{url}: {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {exc}"


def main() -> int:
    """Probe the health URL and return the exit status."""
    ok, line = check(health_url(dict(os.environ)))
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
