"""ApiSmithSource against a real HTTP server on loopback implementing the module's contract."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
import pytest

from syncflow_core.config import SourceRef
from syncflow_core.errors import SourceError
from syncflow_core.slices import plan_slices
from syncflow_core.sources.apismith import ApiSmithSource

SECRET = "test-secret-0123456789abcdef0123"
COLUMNS = [{"name": "region", "type": "VARCHAR2(4)"}, {"name": "order_no", "type": "NUMBER(10)"},
           {"name": "amount", "type": "NUMBER(12,2)"}, {"name": "rv", "type": "NUMBER"}]
ROWS = [[r, i, f"{i},50" if i % 5 == 0 else i * 1.25, i % 7]
        for i in range(1, 48) for r in (["EU", "US"] if i % 2 else ["EU"])]
ROWS.append([None, 999, 1, 0])
REF = SourceRef(endpoint="orders")


class _Api:
    """Server state: the data set, failure injection and what it saw."""

    def __init__(self) -> None:
        self.fail_next: list[int] = []  # statuses to answer before serving normally
        self.sleep_next: list[float] = []
        self.requests: list[dict[str, list[str]]] = []
        self.tokens: list[dict[str, Any]] = []


def _answer(api: _Api, h: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], Any]:
    url = urlparse(h.path)
    q = parse_qs(url.query)
    api.requests.append(q)
    if api.sleep_next:
        time.sleep(api.sleep_next.pop(0))
    if api.fail_next:
        status = api.fail_next.pop(0)
        headers = {"Retry-After": "0"} if status == 429 else {}
        return status, headers, {"error": f"injected {status}"}
    auth = h.headers.get("Authorization", "")
    try:
        claims = jwt.decode(auth.removeprefix("Bearer "), SECRET, algorithms=["HS256"],
                            issuer="syncflow", options={"require": ["exp", "iat", "iss"]})
    except jwt.PyJWTError as exc:
        return 401, {}, {"error": f"bad token: {exc}"}
    api.tokens.append(claims)
    if url.path != "/api/orders":
        return 404, {}, {"error": f"no endpoint {url.path}"}
    names = [c["name"] for c in COLUMNS]
    key = json.loads(q.get("key", ["[]"])[0])
    idx = [names.index(k) for k in key]

    def k(row: list[Any]) -> tuple[Any, ...]:
        return tuple(row[i] for i in idx)

    rows = list(ROWS)
    if key and q.get("null_keys") == ["true"]:
        rows = [r for r in rows if any(v is None for v in k(r))]
    elif key:
        rows = sorted((r for r in rows if all(v is not None for v in k(r))), key=k)
    if "after" in q:
        rows = [r for r in rows if k(r) > tuple(json.loads(q["after"][0]))]
    if "until" in q:
        rows = [r for r in rows if k(r) <= tuple(json.loads(q["until"][0]))]
    if "since" in q:
        f = names.index(q["since_field"][0])
        rows = [r for r in rows if r[f] > json.loads(q["since"][0])]
    cols = COLUMNS
    if "fields" in q:
        fidx = [names.index(f) for f in json.loads(q["fields"][0])]
        cols = [COLUMNS[i] for i in fidx]
        rows = [[r[i] for i in fidx] for r in rows]
    start = int(q.get("page_token", ["0"])[0])
    size = int(q["page_size"][0])
    page = rows[start:start + size]
    nxt = str(start + size) if start + size < len(rows) else None
    return 200, {}, {"columns": cols, "rows": page, "next_page_token": nxt}


@pytest.fixture
def api() -> Iterator[tuple[_Api, str]]:
    state = _Api()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = _answer(state, self)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


def _src(base: str, **kw: Any) -> ApiSmithSource:
    opts: dict[str, Any] = {"page_size": 7, "backoff_base": 0.01, "timeout": 2.0}
    opts.update(kw)
    return ApiSmithSource(base, SECRET, **opts)


def test_pages_become_key_ordered_chunks_with_types_from_metadata(
    api: tuple[_Api, str]
) -> None:
    state, base = api
    src = _src(base)
    assert src.columns(REF) == {"region": "VARCHAR2(4)", "order_no": "NUMBER(10)",
                                "amount": "NUMBER(12,2)", "rv": "NUMBER"}
    chunks = list(src.read(REF, ["region", "order_no"], None, None, 10))
    assert [c.num_rows for c in chunks] == [10] * 7 + [1]  # 71 keyed rows, pages of 7
    rows = [r for c in chunks for r in c.to_pylist()]
    keys = [(r["region"], r["order_no"]) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == 71
    amounts = {r["order_no"]: r["amount"] for r in rows}
    assert amounts[5] == "5,50" and amounts[4] in ("5.0", 5.0)  # nothing dropped
    assert sum(1 for q in state.requests if "page_token" in q) >= 10
    claims = state.tokens[-1]
    assert claims["iss"] == "syncflow" and 0 < claims["exp"] - claims["iat"] <= 300
    nulls = [r for c in src.read_null_keys(REF, ["region", "order_no"], 5) for r in c.to_pylist()]
    assert [r["order_no"] for r in nulls] == [999]
    src.close()


def test_slices_and_watermark(api: tuple[_Api, str]) -> None:
    _, base = api
    src = _src(base)
    seen = []
    for s in plan_slices(src, REF, ["region", "order_no"], 4):
        part = [(r["region"], r["order_no"]) for c in src.read(
            REF, ["region", "order_no"], s.lo, s.hi, 6) for r in c.to_pylist()]
        assert all(s.contains(k) for k in part)
        seen.extend(part)
    assert len(seen) == 71 and len(set(seen)) == 71
    newer = [r for c in src.read(REF, ["order_no", "region"], None, None, 50,
                                 watermark_field="rv", watermark=5) for r in c.to_pylist()]
    assert newer and all(r["rv"] > 5 for r in newer)
    assert len(newer) == sum(1 for r in ROWS if r[3] > 5 and r[0] is not None)


def test_503_twice_then_success(api: tuple[_Api, str]) -> None:
    state, base = api
    state.fail_next = [503, 503]
    assert "region" in _src(base).columns(REF)
    assert len(state.requests) == 3


def test_429_honours_retry_after(api: tuple[_Api, str]) -> None:
    state, base = api
    state.fail_next = [429]
    assert "region" in _src(base, backoff_base=10.0).columns(REF)  # Retry-After: 0 wins


def test_timeout_is_retried(api: tuple[_Api, str]) -> None:
    state, base = api
    state.sleep_next = [1.5]
    t0 = time.monotonic()
    assert "region" in _src(base, timeout=0.5).columns(REF)
    assert len(state.requests) == 2
    assert time.monotonic() - t0 < 2.0


def test_persistent_5xx_gives_up_with_a_clear_error(api: tuple[_Api, str]) -> None:
    state, base = api
    state.fail_next = [500] * 10
    with pytest.raises(SourceError, match=r"gave up after 3 attempts: HTTP 500: injected 500"):
        _src(base, max_retries=2).columns(REF)


def test_wrong_secret_is_a_401_naming_endpoint_and_message(api: tuple[_Api, str]) -> None:
    state, base = api
    src = ApiSmithSource(base, "not-the-secret-but-long-enough-123", backoff_base=0.01)
    with pytest.raises(SourceError) as err:
        src.columns(REF)
    msg = str(err.value)
    assert "HTTP 401" in msg and "/api/orders" in msg and "bad token" in msg
    assert "not-the-secret" not in msg
    assert len(state.requests) == 1  # 4xx is not retried


def test_unknown_endpoint_is_a_404(api: tuple[_Api, str]) -> None:
    _, base = api
    with pytest.raises(SourceError, match=r"GET .*/api/customers: HTTP 404: no endpoint"):
        _src(base).columns(SourceRef(endpoint="customers"))


def test_unreachable_server_is_retried_then_named() -> None:
    src = _src("http://127.0.0.1:9", max_retries=1)
    with pytest.raises(SourceError, match="gave up after 2 attempts: connection failed"):
        src.columns(REF)


def test_a_chunk_never_ends_inside_a_run_of_equal_keys(api: tuple[_Api, str]) -> None:
    # Keyed on region alone, 47 rows share 'EU' and 24 'US', over pages of 7: a chunk that
    # ended inside a run would make the next read (after 'EU') skip the rest of it.
    _, base = api
    chunks = list(_src(base).read(REF, ["region"], None, None, 10))
    regions = [set(c.column("region").to_pylist()) for c in chunks]
    assert regions == [{"EU"}, {"US"}]
    assert sum(c.num_rows for c in chunks) == 71
