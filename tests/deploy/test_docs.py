"""README.md and docs/deployment.md: the safety statement, the two commands, links and paths that exist."""

from __future__ import annotations

import re

import yaml

from tests.deploy.helpers import REPO

README = (REPO / "README.md").read_text()
DEPLOYMENT = (REPO / "docs" / "deployment.md").read_text()
# Docs other helpers are writing while this is written; remove a name once its file has landed.
PENDING: set[str] = set()  # docs linked before they exist; every linked doc has landed

STATEMENT = """\
> **Not a medical device.** infusion-monitor is a secondary display and alerting aid. It is **not** a
> certified medical device, and it does **not** replace the bedside monitors' own alarms, which must stay
> on and audible. Clinical decisions must be made on the bedside equipment and by clinical judgement."""


def test_the_readme_keeps_the_safety_statement_and_the_two_commands() -> None:
    assert STATEMENT in README
    assert "```bash\nbash scripts/test\n```" in README
    assert ".venv/bin/infusion-monitor demo\n" in README
    # CI runs the README's test command and nothing else.
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == ["bash scripts/test"]


def links(text: str) -> list[str]:
    """Return the relative link targets of Markdown text."""
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not t.startswith(("http://", "https://", "#"))]


def headings(text: str) -> set[str]:
    """Return the GitHub anchors of a Markdown file's headings."""
    return {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_every_link_resolves() -> None:
    for base, text in ((REPO, README), (REPO / "docs", DEPLOYMENT)):
        for target in links(text):
            path, _, anchor = target.partition("#")
            file = (base / path).resolve()
            relative = str(file.relative_to(REPO))
            if relative in PENDING and not file.exists():
                continue
            assert file.exists(), f"{target} (from {base})"
            if anchor:
                assert anchor in headings(file.read_text()), target


def test_paths_named_in_the_deployment_guide_exist() -> None:
    for path in sorted(set(re.findall(r"`((?:deploy|tests)/[\w./-]+)`", DEPLOYMENT + README))):
        if path.endswith(("devices.passwd", "/certs/", "tls.conf")) and not path.endswith(".example"):
            continue  # made on the server, never committed
        assert (REPO / path.rstrip("/")).exists(), path


def test_the_documented_user_command_writes_the_file_the_dashboard_reads() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    dashboard = compose["services"]["dashboard"]
    users_file = dashboard["command"][dashboard["command"].index("--users-file") + 1]
    assert users_file.startswith("/data/")  # on the dashboard-data volume
    assert "dashboard-data:/data" in dashboard["volumes"]
    # `user add` without --users-file writes where INFUSION_DASHBOARD_USERS_FILE points.
    assert dashboard["environment"]["INFUSION_DASHBOARD_USERS_FILE"] == users_file
    for text in (README, DEPLOYMENT):
        assert "docker compose run --rm --no-deps dashboard user add charge.nurse --role admin\n" in text
