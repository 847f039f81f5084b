"""What the rewards that ask a server share: one JSON POST with a timeout, retries and backoff; a disk cache.

`post_json` retries what may pass (no connection, a timeout, HTTP 429 and 5xx) with exponential
backoff and gives up on the rest at once (other 4xx: the request itself is wrong). Every failure
is a `ServiceError` whose message names the URL without its query string or credentials, never a
header. `ReplyCache` keeps replies keyed by the request in a JSONL file (in the run directory), so
a resumed run does not pay for them twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from grpolab import redaction

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ServiceError(RuntimeError):
    """A server could not be asked or gave no usable reply; ``timeout`` says whether time ran out."""

    def __init__(self, message: str, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


def public_url(url: str) -> str:
    """``url`` without credentials, query or fragment: safe to log and to show on the card.

    >>> public_url("https://user:pw@api.example.com/v1?key=abc")
    'https://api.example.com/v1'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


async def post_json(
    url: str,
    payload: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    retries: int = 2,
    backoff_s: float = 0.5,
) -> Any:
    """POST ``payload`` as JSON and return the decoded JSON reply, retrying what may pass.

    Raises:
        ServiceError: no usable reply after ``retries`` retries (or at once for a 4xx other than 429).
    """
    import httpx

    where = public_url(url)
    last: ServiceError | None = None
    for attempt in range(retries + 1):
        if attempt:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client:
                reply = await asyncio.wait_for(client.post(url, json=payload, headers=headers), timeout_s)
        except (httpx.TimeoutException, TimeoutError):
            last = ServiceError(f"{where}: no reply within {timeout_s:g} s", timeout=True)
            continue
        except httpx.HTTPError as e:
            last = ServiceError(f"{where}: {type(e).__name__}: {str(e)[:200]}")
            continue
        if reply.status_code in RETRY_STATUS:
            last = ServiceError(f"{where}: HTTP {reply.status_code}")
            continue
        if reply.status_code >= 400:
            raise ServiceError(f"{where}: HTTP {reply.status_code}: {reply.text[:300]}")
        try:
            return reply.json()
        except ValueError as e:
            raise ServiceError(f"{where}: the reply is not JSON ({reply.text[:100]!r})") from e
    assert last is not None
    raise ServiceError(f"{last} (after {retries + 1} attempts)", timeout=last.timeout)


def request_key(payload: dict[str, Any]) -> str:
    """A stable key for a request: the SHA-256 of its canonical JSON.

    >>> request_key({"b": 1, "a": [2]}) == request_key({"a": [2], "b": 1})
    True
    """
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ReplyCache:
    """Replies by request key, in memory and (with ``path``) appended to a JSONL file read back at start.

    >>> cache = ReplyCache(None)
    >>> cache.put("k", "7"); cache.get("k"), cache.get("other")
    ('7', None)
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.hits = 0
        self._lock = threading.Lock()
        self._replies: dict[str, Any] = {}
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self._replies[row["key"]] = row["reply"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash

    def get(self, key: str) -> Any:
        """The cached reply for ``key``, or None."""
        with self._lock:
            reply = self._replies.get(key)
            if reply is not None:
                self.hits += 1
            return reply

    def put(self, key: str, reply: Any) -> None:
        """Remember ``reply`` (and append it to the file)."""
        with self._lock:
            self._replies[key] = reply
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                line = redaction.text(json.dumps({"key": key, "reply": reply}, ensure_ascii=False))
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(line + "\n")
