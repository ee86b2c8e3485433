"""A small FHIR server for tests: a real HTTP server on loopback that records every request and answers as a
FHIR server answers a transaction (no real FHIR server can be installed here).

It checks what a server checks before it processes a transaction: POST to the base URL, a FHIR JSON content
type, a Bundle of type ``transaction`` that fhir.resources' R4B models accept, and the bearer token when one is
required. It then applies the entries' conditional semantics on an in-memory store: an ``ifNoneExist`` whose
identifier it already holds answers ``200 OK`` and creates nothing; a conditional PUT updates. A refused request
gets an OperationOutcome.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.servers import ThreadedHTTP


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FhirServer:
    """State of the fake server: requests received, resources held (type -> identifier -> resource)."""

    token: str | None = None
    requests: list[Recorded] = field(default_factory=list)
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    http: ThreadedHTTP | None = None

    @property
    def base_url(self) -> str:
        """Return the server's FHIR base URL."""
        assert self.http is not None
        return f"http://127.0.0.1:{self.http.port}/fhir"

    def count(self, kind: str) -> int:
        """Return how many resources of a type the server holds."""
        return len(self.resources.get(kind, {}))

    def start(self) -> FhirServer:
        """Serve on a free loopback port."""
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _refuse(self, status: int, code: str, text: str) -> None:
                self._answer(status, {"resourceType": "OperationOutcome",
                                      "issue": [{"severity": "error", "code": code, "diagnostics": text}]})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with state.lock:
                    state.requests.append(Recorded("POST", self.path, dict(self.headers.items()), body))
                if state.token and self.headers.get("Authorization") != f"Bearer {state.token}":
                    self._refuse(401, "login", "a valid bearer token is required")
                    return
                if self.path.rstrip("/") != "/fhir":
                    self._refuse(404, "not-found", f"no endpoint {self.path}")
                    return
                if not self.headers.get("Content-Type", "").startswith("application/fhir+json"):
                    self._refuse(415, "not-supported", "send application/fhir+json")
                    return
                try:
                    from fhir.resources.R4B.bundle import Bundle

                    doc = json.loads(body)
                    Bundle.model_validate(doc)
                except Exception as exc:
                    self._refuse(400, "structure", f"not a valid R4 Bundle: {str(exc)[:200]}")
                    return
                if doc.get("type") != "transaction":
                    self._refuse(400, "invalid", "only transaction Bundles are accepted here")
                    return
                with state.lock:
                    self._answer(200, {"resourceType": "Bundle", "type": "transaction-response",
                                       "entry": [state.apply(e) for e in doc.get("entry", [])]})

        self.http = ThreadedHTTP(Handler)
        return self

    def apply(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Apply one transaction entry to the store; return its response entry."""
        resource, request = entry["resource"], entry["request"]
        kind = resource["resourceType"]
        held = self.resources.setdefault(kind, {})
        if request["method"] == "POST":
            key = request.get("ifNoneExist", "").split("=", 1)[-1] or f"#{len(held)}"
            if key in held:
                return {"response": {"status": "200 OK", "location": f"{kind}/{held[key]['id']}"}}
        else:  # conditional PUT: Kind?identifier=system|value
            key = request["url"].split("identifier=", 1)[1]
        created = key not in held
        held[key] = {**resource, "id": held.get(key, {}).get("id", str(len(held) + 1))}
        return {"response": {"status": "201 Created" if created else "200 OK",
                             "location": f"{kind}/{held[key]['id']}/_history/1"}}

    def close(self) -> None:
        """Stop serving."""
        if self.http is not None:
            self.http.close()
