"""APISmith HTTP source.

The contract SyncFlow expects from an APISmith endpoint (``GET {base_url}/{endpoint}``):

Request headers
    ``Authorization: Bearer <JWT>``: HS256, claims ``iss`` (configured issuer), ``iat``,
    ``exp`` (``iat`` + 5 minutes), signed with the shared secret.

Query parameters (all optional)
    ``page_size``   rows per page (int).
    ``page_token``  opaque token from the previous page's ``next_page_token``.
    ``key``         JSON list of the key field names: rows are ordered by them, ascending.
    ``after``       JSON list of key values: only rows whose key tuple is ``>`` it.
    ``until``       JSON list of key values: only rows whose key tuple is ``<=`` it.
    ``since_field`` + ``since``  only rows with ``since_field > since`` (``since`` is JSON).
    ``fields``      JSON list of columns to return (projection; used to scan keys only).
    ``null_keys``   ``true``: return only rows with a null in a ``key`` field (otherwise such
                    rows are never returned when ``key`` is given).

Response (200, JSON)::

    {"columns": [{"name": "order_no", "type": "VARCHAR2(20)"}, ...],
     "rows": [["SO-1001", ...], ...],
     "next_page_token": "opaque" | null}

``columns`` is present on every page, also when ``rows`` is empty; row values are JSON
strings, numbers, booleans or null, in ``columns`` order. Errors: 4xx/5xx with a JSON body
``{"error": "message"}`` (or ``message``/``detail``) or plain text. 429 may carry
``Retry-After`` (seconds or an HTTP date).

Timeouts, connection errors, 5xx and 429 are retried with exponential backoff and jitter;
other 4xx fail at once with the status, the endpoint and the server's message.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import jwt
import pyarrow as pa

from syncflow_core.config import SourceRef
from syncflow_core.errors import SourceError
from syncflow_core.sources.base import KeyTuple, boundary_positions, rows_to_table

__all__ = ["ApiSmithSource"]

TOKEN_LIFETIME_S = 300
_RENEW_BEFORE_S = 60


def _json(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


class ApiSmithSource:
    """Rows of APISmith endpoints (see the module docstring for the HTTP contract)."""

    def __init__(
        self,
        base_url: str,
        jwt_secret: str,
        issuer: str = "syncflow",
        page_size: int = 1000,
        timeout: float = 30.0,
        max_retries: int = 5,
        transport: httpx.BaseTransport | None = None,
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        """``jwt_secret`` is the HMAC secret itself (the caller reads it from the environment)."""
        if not jwt_secret:
            raise SourceError("apismith source: the JWT secret is empty")
        self._base = base_url.rstrip("/")
        self._secret = jwt_secret
        self._issuer = issuer
        self._page_size = page_size
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._client = httpx.Client(timeout=timeout, transport=transport)
        self._token: tuple[str, float] | None = None

    # -- HTTP ---------------------------------------------------------------------------------

    def _bearer(self) -> str:
        now = time.time()
        if self._token is None or self._token[1] - now < _RENEW_BEFORE_S:
            iat = int(now)
            exp = iat + TOKEN_LIFETIME_S
            claims = {"iss": self._issuer, "iat": iat, "exp": exp}
            self._token = (jwt.encode(claims, self._secret, algorithm="HS256"), float(exp))
        return self._token[0]

    def _safe_base(self) -> str:
        return re.sub(r"//[^/@]*@", "//", self._base)  # no userinfo in messages

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(max(float(retry_after), 0.0), self._backoff_max)
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(retry_after)
                except (TypeError, ValueError):
                    when = None  # unreadable Retry-After: fall back to our own backoff
                if when is not None:
                    wait = float(when.timestamp() - time.time())
                    return min(max(wait, 0.0), self._backoff_max)
        base = min(self._backoff_base * (2.0**attempt), self._backoff_max)
        return base * (0.5 + random.random() / 2)  # jitter: no thundering herd of retries

    def _get(self, endpoint: str, params: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._base}/{endpoint.lstrip('/')}"
        where = f"apismith source: GET {self._safe_base()}/{endpoint.lstrip('/')}"
        last = ""
        for attempt in range(self._max_retries + 1):
            retry_after = None
            try:
                resp = self._client.get(
                    url, params=params, headers={"Authorization": f"Bearer {self._bearer()}"}
                )
            except httpx.TimeoutException as exc:
                last = f"timed out ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__}: {exc})"
            else:
                if resp.status_code == 200:
                    return self._payload(resp, where)
                message = _server_message(resp)
                if resp.status_code == 429 or resp.status_code >= 500:
                    last = f"HTTP {resp.status_code}: {message}"
                    retry_after = resp.headers.get("Retry-After")
                else:
                    raise SourceError(f"{where}: HTTP {resp.status_code}: {message}")
            if attempt < self._max_retries:
                time.sleep(self._delay(attempt, retry_after))
        raise SourceError(f"{where}: gave up after {self._max_retries + 1} attempts: {last}")

    @staticmethod
    def _payload(resp: httpx.Response, where: str) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            raise SourceError(f"{where}: response is not JSON") from None
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("columns"), list)
            or not isinstance(body.get("rows"), list)
        ):
            raise SourceError(f"{where}: response lacks 'columns' and 'rows' lists")
        return body

    def _pages(self, ref: SourceRef, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        endpoint = self._endpoint(ref)
        token: str | None = None
        while True:
            page_params = {**params, "page_size": self._page_size}
            if token:
                page_params["page_token"] = token
            body = self._get(endpoint, page_params)
            yield body
            token = body.get("next_page_token")
            if not token:
                return

    @staticmethod
    def _endpoint(ref: SourceRef) -> str:
        if not ref.endpoint:
            raise SourceError("apismith source: the entity's source names no endpoint")
        return ref.endpoint

    @staticmethod
    def _rechunk(
        pages: Iterator[dict[str, Any]], chunk_size: int, key_fields: Sequence[str] = ()
    ) -> Iterator[pa.Table]:
        # Typed per chunk, not per page, so a chunk never mixes a page typed "double" with
        # one typed "string" for the same column (a column with both becomes text).
        names: list[str] = []
        rows: list[Sequence[Any]] = []
        for body in pages:
            names = [str(c["name"]) for c in body["columns"]]
            rows.extend(body["rows"])
            idx = [names.index(k) for k in key_fields if k in names]
            while len(rows) >= chunk_size:
                cut = _run_cut(rows, idx, chunk_size)
                if cut is None:
                    break  # the last key's run may go on in the next page
                yield rows_to_table(names, rows[:cut])
                del rows[:cut]
        if rows:
            yield rows_to_table(names, rows)

    # -- the Source protocol ------------------------------------------------------------------

    def columns(self, ref: SourceRef) -> dict[str, str]:
        """Column -> declared type text from the endpoint's column metadata."""
        body = self._get(self._endpoint(ref), {"page_size": 1})
        return {str(c["name"]): str(c.get("type") or "") for c in body["columns"]}

    def read(
        self,
        ref: SourceRef,
        key_fields: Sequence[str],
        lo: KeyTuple | None,
        hi: KeyTuple | None,
        chunk_size: int,
        *,
        watermark_field: str | None = None,
        watermark: Any = None,
    ) -> Iterator[pa.Table]:
        """Key-ordered chunks of ``(lo, hi]`` (the server filters and orders; we re-chunk)."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if hi == ():
            return
        params: dict[str, Any] = {"key": _json(list(key_fields))}
        if lo:
            params["after"] = _json(list(lo))
        if hi is not None:
            params["until"] = _json(list(hi))
        if watermark_field is not None and watermark is not None:
            params["since_field"] = watermark_field
            params["since"] = _json(watermark)
        yield from self._rechunk(self._pages(ref, params), chunk_size, key_fields)

    def read_null_keys(
        self, ref: SourceRef, key_fields: Sequence[str], chunk_size: int
    ) -> Iterator[pa.Table]:
        """Rows with a null key field (``null_keys=true``)."""
        params = {"key": _json(list(key_fields)), "null_keys": "true"}
        yield from self._rechunk(self._pages(ref, params), chunk_size)

    def key_bounds(self, ref: SourceRef, key_fields: Sequence[str], n: int) -> list[KeyTuple]:
        """Scan the keys only (``fields`` projection) and pick every ``count/n``-th."""
        params = {"key": _json(list(key_fields)), "fields": _json(list(key_fields))}
        keys: list[KeyTuple] = []
        for body in self._pages(ref, params):
            names = [str(c["name"]) for c in body["columns"]]
            missing = [k for k in key_fields if k not in names]
            if missing:
                raise SourceError(
                    f"apismith source: endpoint {ref.endpoint!r}: key field(s) {missing} not in "
                    f"the response columns {names}"
                )
            idx = [names.index(k) for k in key_fields]
            keys.extend(tuple(row[i] for i in idx) for row in body["rows"])
        return [keys[p - 1] if p > 0 else () for p in boundary_positions(len(keys), n)]

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def _server_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for k in ("error", "message", "detail"):
            if body.get(k):
                return str(body[k])[:500]
    return (resp.text or resp.reason_phrase or "").strip()[:500]


def _run_cut(rows: Sequence[Sequence[Any]], idx: Sequence[int], size: int) -> int | None:
    """Where the first chunk of ``rows`` ends: ``size`` rows and the rest of its last key's run
    (a chunk never ends inside a run of equal keys); None when the run reaches the end of
    ``rows`` and may go on."""
    cut = size
    if not idx:
        return cut
    last = [rows[cut - 1][i] for i in idx]
    while cut < len(rows) and [rows[cut][i] for i in idx] == last:
        cut += 1
    return None if cut == len(rows) else cut
