"""Injected API faults and the request journal.

A fault rule (JSON, as `POST /_lab/faults` takes it)::

    {"method": "POST",            # optional; "*" or absent = any method
     "path": "/compute/.*/servers$",  # regex, re.search on the path with its query string
     "status": 503,               # optional: answer with this status instead
     "body": {...} | "text",      # optional: the reply body (default: the service's error shape)
     "headers": {...},            # optional extra reply headers
     "delay": 2.5,                # optional: sleep this many seconds before answering
     "drop": true,                # optional: close the connection without a reply
     "times": 1}                  # optional: apply to this many requests, then retire

Rules are matched in order; the first live match applies. A rule with only a
delay slows the request and then lets it through to the real handler.
The journal records every request (method, path with query, status, time,
duration); never a header or a body, so no token or password.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .web import ApiError


@dataclass
class FaultRule:
    path: re.Pattern[str]
    method: str | None = None
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    times: int | None = None

    @classmethod
    def parse(cls, data: Any) -> FaultRule:
        if not isinstance(data, dict):
            raise ApiError(400, "a fault rule is a JSON object")
        unknown = set(data) - {"method", "path", "status", "body", "headers", "delay", "drop", "times"}
        if unknown:
            raise ApiError(400, f"unknown fault rule keys: {sorted(unknown)}")
        try:
            path = re.compile(str(data.get("path", "")))
        except re.error as e:
            raise ApiError(400, f"bad path regex: {e}") from None
        method = data.get("method")
        status, times, delay = data.get("status"), data.get("times"), data.get("delay", 0)
        if status is not None and not (isinstance(status, int) and 100 <= status <= 599):
            raise ApiError(400, "status must be an HTTP status code")
        if times is not None and not (isinstance(times, int) and times >= 1):
            raise ApiError(400, "times must be a whole number >= 1")
        if not isinstance(delay, (int, float)) or delay < 0:
            raise ApiError(400, "delay must be seconds >= 0")
        if status is None and not data.get("drop") and not delay:
            raise ApiError(400, "a fault rule needs a status, a delay or drop")
        return cls(path=path, method=None if method in (None, "*") else str(method).upper(), status=status,
                   body=data.get("body"), headers=dict(data.get("headers") or {}), delay=float(delay),
                   drop=bool(data.get("drop")), times=times)

    def public(self) -> dict[str, Any]:
        return {"method": self.method or "*", "path": self.path.pattern, "status": self.status, "delay": self.delay,
                "drop": self.drop, "times": self.times}


class Faults:
    """The live rule list; `take` finds the rule for a request and uses up one of its `times`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def set(self, rules: list[Any]) -> None:
        parsed = [r if isinstance(r, FaultRule) else FaultRule.parse(r) for r in rules]
        with self._lock:
            self._rules = parsed

    def add(self, rules: list[Any]) -> None:
        parsed = [r if isinstance(r, FaultRule) else FaultRule.parse(r) for r in rules]
        with self._lock:
            self._rules.extend(parsed)

    def clear(self) -> None:
        self.set([])

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.public() for r in self._rules]

    def take(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.method not in (None, method) or not rule.path.search(path):
                    continue
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                return rule
        return None


class Journal:
    """Every request the API answered (or dropped): method, path, status, times. No secrets."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._count = 0

    def record(self, method: str, path: str, status: int, started: float, fault: bool = False) -> None:
        entry = {"method": method, "path": path, "status": status, "time": round(started, 6),
                 "ms": round((time.time() - started) * 1000, 3)}
        if fault:
            entry["fault"] = True
        with self._lock:
            self._count += 1
            entry["seq"] = self._count
            self._entries.append(entry)

    def entries(self, since: int = 0) -> list[dict[str, Any]]:
        """Entries with seq > since (status 0 = dropped connection)."""
        with self._lock:
            return [dict(e) for e in self._entries if e["seq"] > since]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
