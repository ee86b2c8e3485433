"""Shared pieces of the suite: servers, sizes, the machine description, percentiles, process statistics."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import Influxd, IngestProcess, Mosquitto, free_port
from vitals.settings import Settings
from vitals.store import Store, open_store_from

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(slots=True)
class Sizes:
    """How much load each benchmark applies (``--quick`` shrinks everything for the smoke test)."""

    chairs: int = 2000
    backlog_per_chair: int = 30  # 60,000 readings per throughput round
    naive_per_chair: int = 3  # the naive ingest is slow: 6,000 readings
    clinic_chairs: int = 48
    big_chairs: int = 2000
    latency_s: float = 20.0
    probe_every_s: float = 0.1
    trend_hours: float = 4.0
    trend_repeats: int = 20
    publisher_procs: int = 2
    repeats: int = 2  # throughput rounds per consumer; the best counts (the machine is shared, noise only slows)

    @classmethod
    def quick(cls) -> Sizes:
        """Return the tiny configuration used by the smoke test."""
        return cls(chairs=100, backlog_per_chair=10, naive_per_chair=2, clinic_chairs=8, big_chairs=100,
                   latency_s=3.0, probe_every_s=0.3, trend_hours=0.25, trend_repeats=3, publisher_procs=1,
                   repeats=1)


@dataclass
class Context:
    """The servers and settings of one run, handed to every benchmark."""

    workdir: Path
    sizes: Sizes
    quick: bool
    profile: bool = False
    mosquitto: Mosquitto | None = None
    influxd: Influxd | None = None
    _n: int = 0
    started: list = field(default_factory=list)

    def start_servers(self) -> None:
        """Start mosquitto and influxd for the whole run."""
        self.mosquitto = Mosquitto(self.workdir / "mosquitto")
        self.mosquitto.start()
        self.influxd = Influxd(self.workdir / "influxd")
        self.influxd.start()

    def stop_servers(self) -> None:
        """Stop everything this run started."""
        for proc in self.started:
            proc.stop()
        for server in (self.mosquitto, self.influxd):
            if server is not None:
                server.stop()

    def unique(self, stem: str) -> str:
        """Return an id unique within this run (site ids, database names, client ids)."""
        self._n += 1
        return f"{stem}{self._n}"

    def store_url(self, backend: str, name: str) -> str:
        """Return a fresh store URL of ``backend`` ('influxdb' or 'sqlite')."""
        if backend == "influxdb":
            assert self.influxd is not None
            return self.influxd.store_url(name)
        path = self.workdir / "sqlite" / f"{name}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"

    def ingest(self, store_url: str, *extra: str, env: dict[str, str] | None = None, wait: bool = True) -> IngestProcess:
        """Start a real ingest subprocess (``python -m infusion_monitor ingest``), by default waiting until healthy."""
        assert self.mosquitto is not None
        proc = IngestProcess(self.workdir / self.unique("ingest"), self.mosquitto.url, store_url, *extra,
                             env={"PYTHONUNBUFFERED": "1", **(env or {})})
        self.started.append(proc)
        if wait:
            proc.start()
        else:  # the caller polls /metrics from the very start (throughput rounds)
            run_env = {**os.environ, "PYTHONPATH": str(REPO), **proc.env}
            with open(proc.log_path, "ab") as log:
                proc.proc = subprocess.Popen(proc.command(), stdout=log, stderr=subprocess.STDOUT, cwd=proc.workdir,
                                             env=run_env)
        return proc


def open_bench_store(url: str) -> Store:
    """Open a store the suite names, with the token, timeout and retention of the environment's settings."""
    return open_store_from(Settings(store_url=url))


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """Return n, p50, p95, p99 and max of ``values`` (nearest-rank), in the values' unit."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
        return round(ordered[k], 2)

    return {"n": len(ordered), "p50": rank(50), "p95": rank(95), "p99": rank(99), "max": round(ordered[-1], 2)}


def proc_cpu_rss(pid: int) -> tuple[float, float]:
    """Return (user+system CPU seconds, RSS in MiB) of a process from /proc/PID/stat (all its threads)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15 of stat)
    rss = int(fields[21]) * PAGE_SIZE / 2**20  # field 24
    return cpu, rss


def metric(proc: IngestProcess, name: str, default: float | None = None) -> float:
    """Return one sample of the ingest's /metrics (0 when absent; ``default`` when it does not answer yet)."""
    if default is not None:
        try:
            return metric(proc, name)
        except OSError:
            if proc.proc is not None and proc.proc.poll() is not None:
                raise RuntimeError(f"ingest exited with {proc.proc.returncode}:\n{proc.log()[-3000:]}") from None
            return default
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.http_port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "_total "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def run_consumer(mode: str, mqtt_url: str, client_id: str, expect: int, target: str | None = None,
                 timeout: float = 180) -> dict:
    """Run a reference consumer subprocess to completion and return its JSON result."""
    cmd = [sys.executable, "-m", "benchmarks.consumers", mode, "--mqtt-url", mqtt_url, "--client-id", client_id,
           "--expect", str(expect), "--timeout", str(timeout)]
    if target:
        cmd += ["--target", target]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60, cwd=REPO, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} consumer failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def machine() -> dict[str, object]:
    """Describe the machine and software the figures were measured on."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    os_name = platform.platform()
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as fh:
            info = dict(line.rstrip().split("=", 1) for line in fh if "=" in line)
        os_name = info.get("PRETTY_NAME", os_name).strip('"') + f" (kernel {platform.release()})"
    commit = _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    import paho.mqtt

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 2**20, 1),
        "os": os_name,
        "python": platform.python_version(),
        "paho_mqtt": paho.mqtt.__version__,
        "mosquitto": _version(["mosquitto", "-h"]),
        "influxd": _version(["influxd", "version"]),
        "git_commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


__all__ = ["Context", "Sizes", "free_port", "machine", "metric", "open_bench_store", "percentiles", "proc_cpu_rss",
           "run_consumer"]
