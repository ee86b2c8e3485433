"""Profile the ingest subprocess with py-spy while it drains a backlog (``python -m benchmarks --profile``).

py-spy is a development tool, not a dependency: ``/tmp/venv/bin/pip install py-spy``. It samples every thread
of the process from outside, so the ingest runs unmodified (sampling slows it by a few per cent).

Only samples of the thread holding the GIL are kept (``--gil``): the ingest is bound by one interpreter, so
that is where its CPU goes. Sampling every thread instead counted the idle ones waiting on a queue or a
condition (a third of all samples) and hid that paho's thread held the GIL 81 % of the time
(benchmarks/findings.md, "paho's receive path").
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def py_spy() -> str | None:
    """Return the py-spy executable, if installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(pid: int, out: Path, seconds: float = 30, rate: int = 250) -> subprocess.Popen:
    """Start sampling ``pid`` (all threads, collapsed stacks) into ``out``."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    return subprocess.Popen([exe, "record", "-o", str(out), "--format", "raw", "-r", str(rate), "-d", str(int(seconds)),
                             "-p", str(pid), "--threads", "--gil"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen) -> None:
    """Stop sampling and let py-spy write its file."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)


def _name(frame: str) -> str:
    """Return 'function (file.py)' of a py-spy frame 'function (path/file.py:line)'."""
    if " (" not in frame:
        return frame
    func, _, where = frame.partition(" (")
    return f"{func} ({where.split(':')[0].rsplit('/', 1)[-1]})"


def summarize(path: Path, top: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Return the busiest threads, and functions by inclusive and by self share of the samples."""
    threads: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1] if ": " in frames[0] else "unnamed"
        threads[thread if "process_request" not in thread else "http request threads"] += n
        for name in {_name(f) for f in frames[1:]}:
            inclusive[name] += n
        own[_name(frames[-1])] += n
    share = (lambda c: [(k, round(v / total * 100, 1)) for k, v in c.most_common(top)]) if total else (lambda c: [])
    return {"samples": [("total", total)], "threads": share(threads), "inclusive": share(inclusive), "self": share(own)}
