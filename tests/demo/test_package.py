"""`pip install .` then `infusion-monitor demo`: the built wheel carries every file the package needs, and the
installed console script (not the source tree) runs the demo, which headless Chromium sees with live values.

The wheel is built the way scripts/test and the Dockerfile install the project (pip, with build isolation, so
setuptools comes from the index as it does there); dependencies come from the test environment.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.demo.test_demo import (  # noqa: F401 - demo_factory is a fixture
    REPO,
    START_TIMEOUT_S,
    browser_sees_live_values,
    demo_factory,
    processes_mentioning,
)

PACKAGES = re.findall(r'"(\w+)\*"', re.search(r"include = \[(.*?)\]", (REPO / "pyproject.toml").read_text()).group(1))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the project's wheel with pip."""
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("*.whl")
    return built


def package_files() -> list[str]:
    """Return the files of the packages as tracked by git (the source of a release)."""
    listed = subprocess.run(["git", "ls-files", *PACKAGES], cwd=REPO, capture_output=True, text=True, check=True)
    return [name for name in listed.stdout.splitlines() if "__pycache__" not in name]


def test_the_wheel_carries_every_package_file(wheel: Path) -> None:
    assert set(PACKAGES) == {"vitals", "ingest", "simulator", "dashboard", "interop", "infusion_monitor"}
    names = set(zipfile.ZipFile(wheel).namelist())
    files = package_files()
    assert any(f.endswith(".toml") for f in files)  # scenarios: the data files this test is for
    missing = [f for f in files if f not in names]
    assert missing == [], f"not in the wheel (add their suffix to [tool.setuptools.package-data]): {missing}"
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "infusion-monitor = infusion_monitor.cli:main" in entry_points


@pytest.mark.integration
@pytest.mark.browser
def test_the_installed_console_script_runs_the_demo(wheel: Path, tmp_path: Path, demo_factory) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    script = target / "bin" / "infusion-monitor"
    assert script.exists()
    elsewhere = tmp_path / "elsewhere"  # not the repository: only the installed package is importable
    elsewhere.mkdir()
    data_dir = tmp_path / "demo-data"
    demo = demo_factory("--chairs", "2", "--data-dir", str(data_dir), command=[sys.executable, str(script)],
                        pythonpath=target, cwd=elsewhere)
    url = demo.wait_for(r"Dashboard:\s+(http://127\.0\.0\.1:\d+)", START_TIMEOUT_S).group(1)
    with urllib.request.urlopen(url + "/", timeout=10) as resp:
        assert resp.status == 200
    assert re.fullmatch(r"\d{2,3}", browser_sees_live_values(url, tmp_path / "installed-demo.png"))
    assert demo.interrupt() == 0, "".join(demo.lines[-40:])
    assert processes_mentioning(str(data_dir)) == []
    loaded = subprocess.run([sys.executable, "-c", "import infusion_monitor, sys; print(infusion_monitor.__file__)"],
                            cwd=elsewhere, env={"PYTHONPATH": str(target)}, capture_output=True, text=True)
    assert loaded.stdout.strip().startswith(str(target)), loaded
