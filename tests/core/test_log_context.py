"""Correlation ids on log records and JSON lines (with credentials redacted)."""

from __future__ import annotations

import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from syncflow_core.log_context import CorrelationFilter, JsonFormatter, current, log_context


def _logger() -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CorrelationFilter())
    logger = logging.getLogger(f"syncflow.test.{id(out)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, out


def test_lines_carry_the_fields_of_their_block_and_only_there() -> None:
    logger, out = _logger()
    with log_context(run_id="r1", entity="orders", slice="slice-02"):
        with log_context(chunk=3):
            logger.info("chunk committed to postgresql://svc:hunter22@db/x")
        logger.info("slice done")
    logger.info("outside")
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [(x["run_id"], x["entity"], x["slice"], x["chunk"]) for x in lines] == [
        ("r1", "orders", "slice-02", 3), ("r1", "orders", "slice-02", None),
        (None, None, None, None)]
    assert "hunter22" not in lines[0]["message"] and "svc:***@db" in lines[0]["message"]
    assert current() == {}


def test_threads_do_not_see_another_threads_context() -> None:
    with ThreadPoolExecutor(1) as pool, log_context(entity="items"):
        assert pool.submit(current).result() == {}
        assert current() == {"entity": "items"}


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown log context fields"), log_context(row=1):
        pass
