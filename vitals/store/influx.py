"""The InfluxDB store: line protocol in, InfluxQL out (schema: docs/storage-schema.md).

One query module serves every InfluxDB: 1.x, 2.x (through its DBRP mapping: bucket ``vitals`` is
database ``vitals``, retention policy ``autogen``) and 3.x all answer InfluxQL on ``/query``, which this
module calls with urllib3 (one pooled, thread-safe connection manager). Only the writes differ: ``/write``
line protocol for 1.x; influxdb-client's synchronous write API (the v2 API, with a token) for 2.x and 3.x,
which also creates a missing bucket with the configured retention and its DBRP mapping.

Points are keyed by measurement, tags and time; writing the same point twice merges its fields, which
makes the ingest's at-least-once delivery exactly-once in storage.

URLs::

    influxdb://[user:password@]host:port/database[?rp=policy&tls=1]
    influxdb2://host:port/bucket?org=ORG[&tls=1]      (token from the settings or INFLUX_TOKEN)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import urllib3

from vitals.care import CareRecord
from vitals.reading import VITALS, Reading
from vitals.records import AlarmEvent, AuditRecord, Session
from vitals.store.base import Latest, Series, Store, StoreError, StoreRejected, choose_step_ms

# Lines per HTTP write: InfluxDB advises 5,000–10,000; larger bodies only add latency to the first point.
LINES_PER_WRITE = 5000
# Rows per chunk of a query answer: keeps memory bounded for a long raw export.
QUERY_CHUNK = 10_000


# -- line protocol and InfluxQL escaping (the only place strings meet the wire) ----------------------------

def _escape_key(value: str) -> str:
    """Escape a measurement, tag key, tag value or field key (commas, equals signs, spaces)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field_value(value: object) -> str:
    """Return a line protocol field value: float, integer (``i``), boolean or quoted string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("line protocol cannot carry NaN or infinity")
        return repr(value)
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def line(measurement: str, tags: dict[str, str | None], fields: dict[str, object], ts_ms: int) -> str | None:
    """Return one line of line protocol (None when no field has a value)."""
    field_text = ",".join(f"{_escape_key(k)}={_field_value(v)}" for k, v in fields.items() if v is not None)
    if not field_text:
        return None
    tag_text = "".join(f",{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags.items()) if v)
    return f"{_escape_key(measurement)}{tag_text} {field_text} {ts_ms}"


def quote_literal(value: str) -> str:
    """Return an InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _key(value: str) -> str:
    """Return a short tag-safe key for free text (alarm ids, user names): tags must never carry free text."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def _time_where(start_ms: int | None, end_ms: int | None) -> list[str]:
    clauses = []
    if start_ms is not None:
        clauses.append(f"time >= {int(start_ms)}ms")
    if end_ms is not None:
        clauses.append(f"time < {int(end_ms)}ms")
    return clauses


def _eq(name: str, value: str | None) -> list[str]:
    return [] if value is None else [f'"{name}" = {quote_literal(value)}']


def _where(clauses: list[str]) -> str:
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


class InfluxStore(Store):
    """A Store on an InfluxDB server (1.x API, or 2.x/3.x with a token)."""

    def __init__(self, base_url: str, database: str, *, v2_org: str | None = None, token: str | None = None,
                 username: str | None = None, password: str | None = None, retention_policy: str | None = None,
                 retention: str | None = None, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.database = database
        self.v2_org = v2_org
        self.retention_policy = retention_policy
        self.retention = retention if retention not in (None, "", "0", "inf") else None
        if self.retention:
            duration_s(self.retention)  # refuse a malformed retention now: it is spliced into InfluxQL
        self.url_redacted = f"{'influxdb2' if v2_org else 'influxdb'}://{urlsplit(self.base_url).netloc}/{database}"
        headers = {"User-Agent": "infusion-monitor"}
        if token:
            headers["Authorization"] = f"Token {token}"
        elif username:
            headers.update(urllib3.make_headers(basic_auth=f"{username}:{password or ''}"))
        self._headers = headers
        self._http = urllib3.PoolManager(
            num_pools=2, maxsize=8, headers=headers, retries=False,
            timeout=urllib3.Timeout(connect=min(timeout_s, 3.0), read=timeout_s),
        )
        self._ready = False
        self._ready_lock = threading.Lock()
        self._v2: Any = None
        if v2_org:
            from influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

            client = InfluxDBClient(url=self.base_url, token=token, org=v2_org, timeout=int(timeout_s * 1000))
            self._v2 = (client, client.write_api(write_options=SYNCHRONOUS))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> InfluxStore:
        """Open an ``influxdb://`` (1.x API) or ``influxdb2://`` (2.x/3.x API) URL."""
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        database = unquote(parts.path.strip("/"))
        if not database or "/" in database or not parts.hostname:
            raise ValueError(f"an InfluxDB store URL names a host and a database or bucket, not {url!r}")
        scheme = "https" if query.get("tls") in ("1", "true", "yes") else "http"
        base = f"{scheme}://{parts.hostname}:{parts.port or 8086}"
        token = options.get("token")
        timeout_s = float(options.get("timeout_s") or 5.0)
        if parts.scheme == "influxdb2":
            org = query.get("org")
            if not org:
                raise ValueError("an influxdb2:// URL needs ?org=ORG")
            if not token:
                raise ValueError("an influxdb2:// store needs a token: set INFUSION_INFLUX_TOKEN or INFLUX_TOKEN")
            return cls(base, database, v2_org=org, token=str(token), retention=_opt_str(options.get("retention")),
                       timeout_s=timeout_s)
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if username is None and token and ":" in str(token):
            # 1.x credentials given as the token setting ("user:password", what InfluxDB 1.8+ and 2.x's v1 API
            # take as "Authorization: Token user:password"): sent as Basic auth, which 1.6 also understands.
            username, password = str(token).split(":", 1)
            token = None
        return cls(base, database, token=str(token) if token and username is None else None,
                   username=username, password=password,
                   retention_policy=query.get("rp"), retention=_opt_str(options.get("retention")),
                   timeout_s=timeout_s)

    # -- HTTP ---------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, fields: dict[str, str] | None = None, body: bytes | None = None,
                 preload: bool = True) -> urllib3.BaseHTTPResponse:
        """Send one request; line protocol goes in the body, query fields in the URL (GET) or a form (POST)."""
        url = f"{self.base_url}{path}"
        try:
            if body is not None:
                return self._http.request(method, url, body=body, preload_content=preload,
                                          headers={**self._headers, "Content-Type": "text/plain; charset=utf-8"})
            if method == "POST":
                return self._http.request(method, url, fields=fields, encode_multipart=False, preload_content=preload)
            return self._http.request(method, url, fields=fields, preload_content=preload)
        except urllib3.exceptions.HTTPError as exc:
            raise StoreError(f"InfluxDB at {self.base_url} did not answer: {exc}") from exc

    def _write_v2(self, chunk: list[str]) -> tuple[int, str]:
        """Write through influxdb-client's v2 API; return (HTTP status, error text)."""
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._v2[1].write(bucket=self.database, org=self.v2_org, record=chunk, write_precision=WritePrecision.MS)
        except ApiException as exc:
            return int(exc.status or 500), str(exc.body or exc.reason)[:300]
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreError(f"InfluxDB at {self.base_url} did not answer: {exc}") from exc
        return 204, ""

    def _post_lines(self, lines: list[str]) -> None:
        from urllib.parse import urlencode

        params = {"db": self.database, "precision": "ms"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        path = "/write?" + urlencode(params)
        dropped, reasons = 0, []
        for i in range(0, len(lines), LINES_PER_WRITE):
            chunk = lines[i : i + LINES_PER_WRITE]
            if self._v2 is not None:
                status, text = self._write_v2(chunk)
                if status == 404:  # the bucket went away (or was never made): make it, then write again
                    self._ready = False
                    self._ensure()
                    status, text = self._write_v2(chunk)
            else:
                body = ("\n".join(chunk) + "\n").encode()
                resp = self._request("POST", path, body=body)
                if resp.status == 404 and b"database not found" in resp.data:
                    self._create_database()
                    resp = self._request("POST", path, body=body)
                status, text = resp.status, resp.data[:300].decode("utf-8", "replace").strip()
            if status < 300:
                continue
            if status in (400, 422):
                # Refused for good (a partial write stores the rest): points beyond the retention period,
                # a field type conflict with data written by someone else. Retrying would block the spool.
                found = re.search(r"dropped=(\d+)", text)
                dropped += int(found.group(1)) if found else len(chunk)
                reasons.append(text)
                continue
            raise StoreError(f"InfluxDB refused a write ({status}): {text}{_auth_hint(status)}")
        if dropped:
            raise StoreRejected(f"InfluxDB refused {dropped} points for good: {'; '.join(reasons)[:400]}", dropped)

    def _create_database(self) -> None:
        """Create the 1.x database (idempotent), with the configured retention when one is set."""
        statement = f'CREATE DATABASE "{self.database}"'
        if self.retention:
            statement += f" WITH DURATION {self.retention}"
        self._run(statement, method="POST")

    def _ensure(self) -> None:
        """Create the database (1.x) or bucket and DBRP mapping (2.x) on first use: a fresh server needs no step."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            if self._v2 is not None:
                self._ensure_bucket()
            else:
                dbs = self._run("SHOW DATABASES")
                names = {row[0] for series in dbs for row in series.get("values") or []}
                if self.database not in names:
                    self._create_database()
            self._ready = True

    def _ensure_bucket(self) -> None:
        """Create the 2.x bucket with the configured retention, and map database ``bucket`` to it for InfluxQL."""
        from influxdb_client import BucketRetentionRules
        from influxdb_client.domain.dbrp_create import DBRPCreate
        from influxdb_client.rest import ApiException
        from influxdb_client.service.dbr_ps_service import DBRPsService

        client = self._v2[0]
        try:
            if client.buckets_api().find_bucket_by_name(self.database) is not None:
                return
            seconds = duration_s(self.retention) if self.retention else 0
            rules = [BucketRetentionRules(type="expire", every_seconds=seconds)] if seconds else []
            bucket = client.buckets_api().create_bucket(bucket_name=self.database, retention_rules=rules,
                                                        org=self.v2_org)
            DBRPsService(client.api_client).post_dbrp(DBRPCreate(
                org_id=bucket.org_id, bucket_id=bucket.id, database=self.database, retention_policy="autogen",
                default=True))
        except ApiException as exc:
            raise StoreError(f"cannot create bucket {self.database!r} in org {self.v2_org!r}: "
                             f"{exc.status} {str(exc.body)[:200]}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreError(f"InfluxDB at {self.base_url} did not answer: {exc}") from exc

    def _run(self, q: str, method: str = "GET") -> list[dict[str, Any]]:
        """Run InfluxQL statements; return every series of every result, chunks joined. Raise StoreError."""
        fields = {"q": q, "db": self.database, "epoch": "ms", "chunked": "true", "chunk_size": str(QUERY_CHUNK)}
        if self.retention_policy:
            fields["rp"] = self.retention_policy
        resp = self._request(method, "/query", fields, preload=False)
        try:
            if resp.status >= 300:
                text = resp.read()[:300].decode("utf-8", "replace").strip()
                raise StoreError(f"InfluxDB refused a query ({resp.status}): {text}{_auth_hint(resp.status)}")
            series: list[dict[str, Any]] = []
            for chunk in _json_lines(resp):
                for result in chunk.get("results", []):
                    if "error" in result:
                        if "database not found" in result["error"] or result["error"] == "not executed":
                            continue  # nothing written yet (later statements then are "not executed"): empty
                        raise StoreError(f"InfluxDB query failed: {result['error']}")
                    for one in result.get("series", []):
                        one["statement_id"] = result.get("statement_id", 0)
                        series.append(one)
            return series
        except urllib3.exceptions.HTTPError as exc:
            raise StoreError(f"InfluxDB at {self.base_url} broke off an answer: {exc}") from exc
        finally:
            resp.release_conn()

    def _rows(self, q: str) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
        """Yield (tags, row) for every row of every series a query returns."""
        for series in self._run(q):
            columns = series["columns"]
            tags = series.get("tags") or {}
            for values in series.get("values") or []:
                yield tags, dict(zip(columns, values, strict=True))

    # -- readings -----------------------------------------------------------------------------------------

    def write_readings(self, readings: Sequence[Reading]) -> None:
        """Write readings as points of ``vitals`` (tags site, chair); ``n=1i`` lets count(n) count points."""
        if not readings:
            return
        self._ensure()
        lines = []
        for r in readings:
            fields: dict[str, object] = {"n": 1, "seq": r.seq}
            for vital in VITALS:
                value = getattr(r, vital)
                if value is not None:
                    fields[vital] = float(value)
            text = line("vitals", {"site": r.site, "chair": r.chair}, fields, r.ts_ms)
            if text:
                lines.append(text)
        self._post_lines(lines)

    def latest(self, site: str | None = None, since_ms: int | None = None) -> list[Latest]:
        """Return each chair's newest value of every vital (one ORDER BY time DESC LIMIT 1 per vital and chair)."""
        where = _where(_eq("site", site) + _time_where(since_ms, None))
        statements = ";".join(
            f'SELECT "{v}" FROM "vitals"{where} GROUP BY "site", "chair" ORDER BY time DESC LIMIT 1' for v in VITALS)
        found: dict[tuple[str, str], dict[str, tuple[int, float]]] = {}
        for series in self._run(statements):
            vital = VITALS[series["statement_id"]]
            tags = series.get("tags") or {}
            for ts, value in series.get("values") or []:
                if value is not None:
                    found.setdefault((tags["site"], tags["chair"]), {})[vital] = (int(ts), float(value))
        return [Latest(s, c, values) for (s, c), values in sorted(found.items())]

    def series(self, site: str, chair: str, start_ms: int, end_ms: int, max_points: int = 2000) -> Series:
        """Return a chair's vitals over a range: raw, or GROUP BY time buckets aligned to the epoch."""
        step = choose_step_ms(start_ms, end_ms, max_points)
        result = Series(step_ms=step)
        where = _where(_eq("site", site) + _eq("chair", chair) + _time_where(start_ms, end_ms))
        if step == 0:
            rows = [row for _, row in self._rows(f'SELECT {_columns(VITALS)} FROM "vitals"{where}')]
            result.times = [int(row["time"]) for row in rows]
            for vital in VITALS:
                column = [_num(row.get(vital)) for row in rows]
                result.mean[vital], result.low[vital], result.high[vital] = column, list(column), list(column)
            return result
        aggregates = ", ".join(f'mean("{v}") AS "{v}_mean", min("{v}") AS "{v}_low", max("{v}") AS "{v}_high"'
                               for v in VITALS)
        rows = [row for _, row in self._rows(
            f'SELECT {aggregates} FROM "vitals"{where} GROUP BY time({step}ms) fill(none)')]
        result.times = [int(row["time"]) for row in rows]
        for vital in VITALS:
            result.mean[vital] = [_num(row.get(f"{vital}_mean")) for row in rows]
            result.low[vital] = [_num(row.get(f"{vital}_low")) for row in rows]
            result.high[vital] = [_num(row.get(f"{vital}_high")) for row in rows]
        return result

    def readings(self, site: str, chair: str, start_ms: int, end_ms: int) -> list[Reading]:
        """Return a chair's raw readings in [start_ms, end_ms), oldest first."""
        where = _where(_eq("site", site) + _eq("chair", chair) + _time_where(start_ms, end_ms))
        out = []
        for _, row in self._rows(f'SELECT {_columns(("seq", *VITALS))} FROM "vitals"{where}'):
            seq = row.get("seq")
            out.append(Reading(site, chair, int(row["time"]), None if seq is None else int(seq),
                               *(_num(row.get(v)) for v in VITALS)))
        return out

    def count_readings(self, site: str | None = None, chair: str | None = None) -> int:
        """Return how many reading points are stored (count of the constant field ``n``)."""
        where = _where(_eq("site", site) + _eq("chair", chair))
        total = 0
        for _, row in self._rows(f'SELECT count("n") FROM "vitals"{where}'):
            total += int(row.get("count") or 0)
        return total

    # -- sessions, alarm events, audit ------------------------------------------------------------------

    def write_sessions(self, sessions: Sequence[Session]) -> None:
        """Write sessions as points of ``sessions`` at their start time; an update merges into the point."""
        if not sessions:
            return
        self._ensure()
        self._post_lines([text for s in sessions if (text := line("sessions", {"site": s.site, "chair": s.chair}, {
            "session_id": s.session_id, "state": s.state, "ended_at": s.ended_at, "drug": s.drug,
            "dose_mg_per_kg": _num(s.dose_mg_per_kg), "duration_min": _num(s.duration_min),
            "patient_ref": s.patient_ref, "baseline_sys": _num(s.baseline_sys),
            "weight_kg": _num(s.weight_kg), "total_mg": _num(s.total_mg), "baseline_dia": _num(s.baseline_dia),
            "baseline_source": s.baseline_source, "started_by": s.started_by,
        }, s.started_at))])

    def sessions(self, site: str | None = None, chair: str | None = None,
                 start_ms: int | None = None, end_ms: int | None = None) -> list[Session]:
        """Return sessions that started in [start_ms, end_ms), oldest first."""
        where = _where(_eq("site", site) + _eq("chair", chair) + _time_where(start_ms, end_ms))
        out = []
        for tags, row in self._rows(f'SELECT * FROM "sessions"{where} GROUP BY "site", "chair"'):
            ended = row.get("ended_at")
            out.append(Session(
                site=tags["site"], chair=tags["chair"], session_id=row["session_id"], state=row["state"],
                started_at=int(row["time"]), ended_at=None if ended is None else int(ended), drug=row.get("drug"),
                dose_mg_per_kg=_num(row.get("dose_mg_per_kg")), duration_min=_num(row.get("duration_min")),
                patient_ref=row.get("patient_ref"), baseline_sys=_num(row.get("baseline_sys")),
                weight_kg=_num(row.get("weight_kg")), total_mg=_num(row.get("total_mg")),
                baseline_dia=_num(row.get("baseline_dia")), baseline_source=row.get("baseline_source"),
                started_by=row.get("started_by"),
            ))
        return sorted(out, key=lambda s: (s.started_at, s.site, s.chair))

    def write_alarm_events(self, events: Sequence[AlarmEvent]) -> None:
        """Write alarm events as points of ``alarms`` keyed by chair, event and a hash of the alarm id."""
        if not events:
            return
        self._ensure()
        self._post_lines([text for e in events if (text := line(
            "alarms", {"site": e.site, "chair": e.chair, "event": e.event, "alarm_key": _key(e.alarm_id)},
            {"alarm_id": e.alarm_id, "vital": e.vital, "kind": e.kind, "priority": e.priority,
             "value": _num(e.value), "limit": _num(e.limit), "user": e.user, "text": e.text}, e.ts))])

    def alarm_events(self, site: str | None = None, chair: str | None = None,
                     start_ms: int | None = None, end_ms: int | None = None) -> list[AlarmEvent]:
        """Return alarm events in [start_ms, end_ms), oldest first."""
        where = _where(_eq("site", site) + _eq("chair", chair) + _time_where(start_ms, end_ms))
        out = []
        for tags, row in self._rows(f'SELECT * FROM "alarms"{where} GROUP BY "site", "chair", "event", "alarm_key"'):
            out.append(AlarmEvent(
                alarm_id=row["alarm_id"], site=tags["site"], chair=tags["chair"], vital=row["vital"],
                kind=row["kind"], priority=row["priority"], event=tags["event"], value=_num(row.get("value")),
                limit=_num(row.get("limit")), ts=int(row["time"]), user=row.get("user"), text=row.get("text"),
            ))
        return sorted(out, key=lambda e: (e.ts, e.site, e.chair, e.alarm_id, e.event))

    def write_audit(self, records: Sequence[AuditRecord]) -> None:
        """Write audit records as points of ``audit`` keyed by action, site, chair and a hash of the user."""
        if not records:
            return
        self._ensure()
        self._post_lines([text for r in records if (text := line(
            "audit", {"action": r.action, "site": r.site, "chair": r.chair, "user_key": _key(r.user)},
            {"user": r.user, "alarm_id": r.alarm_id, "detail": r.detail}, r.ts))])

    def audit(self, site: str | None = None, start_ms: int | None = None,
              end_ms: int | None = None, user: str | None = None) -> list[AuditRecord]:
        """Return audit records in [start_ms, end_ms), oldest first."""
        where = _where(_eq("site", site) + _eq("user", user) + _time_where(start_ms, end_ms))
        out = []
        for tags, row in self._rows(f'SELECT * FROM "audit"{where} GROUP BY "action", "site", "chair", "user_key"'):
            out.append(AuditRecord(ts=int(row["time"]), action=tags["action"], user=row["user"],
                                   site=tags.get("site") or None, chair=tags.get("chair") or None,
                                   alarm_id=row.get("alarm_id"), detail=row.get("detail")))
        return sorted(out, key=lambda r: (r.ts, r.action, r.user))

    def write_care_records(self, records: Sequence[CareRecord]) -> None:
        """Write session-record entries as points of ``care`` keyed by chair and type at their ts."""
        if not records:
            return
        self._ensure()
        self._post_lines([text for r in records if (text := line(
            "care", {"site": r.site, "chair": r.chair, "type": r.type},
            {"session_id": r.session_id, "author": r.author, "data": r.data_json()}, r.ts))])

    def care_records(self, site: str, chair: str | None = None, session_id: str | None = None,
                     types: Sequence[str] | None = None, start_ms: int | None = None,
                     end_ms: int | None = None) -> list[CareRecord]:
        """Return session-record entries in [start_ms, end_ms), oldest first."""
        clauses = _eq("site", site) + _eq("chair", chair) + _eq("session_id", session_id)
        if types is not None:
            clauses.append("(" + " OR ".join(f'"type" = {quote_literal(t)}' for t in types) + ")")
        where = _where(clauses + _time_where(start_ms, end_ms))
        out = [CareRecord.from_stored(tags["site"], tags["chair"], row["session_id"], int(row["time"]), tags["type"],
                                      row["author"], row["data"])
               for tags, row in self._rows(f'SELECT * FROM "care"{where} GROUP BY "site", "chair", "type"')]
        return sorted(out, key=lambda r: (r.ts, r.chair, r.type))

    # -- health -------------------------------------------------------------------------------------------

    def ping(self) -> bool:
        """Return whether the server answers and takes this store's credentials (StoreError says when it refuses them).

        /ping needs no credentials, so a server that answers it may still refuse every query: one small query
        follows, so that a wrong password or token shows as such, not as a store that answers and then fails.
        """
        try:
            resp = self._http.request("GET", f"{self.base_url}/ping", timeout=2.0)
        except urllib3.exceptions.HTTPError:
            return False
        if resp.status not in (200, 204):
            return False
        self._run("SHOW MEASUREMENTS LIMIT 1")
        return True

    def close(self) -> None:
        """Close pooled connections."""
        self._http.clear()
        if self._v2 is not None:
            self._v2[1].close()
            self._v2[0].close()


def _auth_hint(status: int) -> str:
    """Return what to check when InfluxDB refused the credentials (401/403), else nothing."""
    if status in (401, 403):
        return ("; check the credentials: user:password in an influxdb:// URL, or INFUSION_INFLUX_TOKEN "
                "(a 2.x/3.x token, or user:password for 1.x)")
    return ""


_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration_s(text: str) -> int:
    """Return the seconds of an InfluxDB duration such as ``90d``, ``12h`` or ``2w1d`` (``0``: forever)."""
    if text.strip() in ("0", "inf", ""):
        return 0
    parts = re.findall(r"(\d+)([smhdw])", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"retention {text!r} is not a duration like 90d, 12h or 2w")
    return sum(int(n) * _UNITS_S[u] for n, u in parts)


def _json_lines(resp: urllib3.BaseHTTPResponse) -> Iterator[dict[str, Any]]:
    """Yield each JSON document of a chunked InfluxDB answer (one per line)."""
    buffer = b""
    for block in resp.stream(65536):
        buffer += block
        *complete, buffer = buffer.split(b"\n")
        for text in complete:
            if text.strip():
                yield json.loads(text)
    if buffer.strip():
        yield json.loads(buffer)


def _columns(names: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def _num(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)
