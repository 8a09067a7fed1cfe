"""Two writers of one target table never interleave, even without Dagster's run tags."""

from __future__ import annotations

import threading
import time

import pytest

from syncflow_core.targets.sql import SqlTarget


@pytest.mark.postgres
def test_second_writer_waits_for_the_first_to_commit(pg_url: str) -> None:
    target = SqlTarget(pg_url)
    events: list[str] = []
    first_locked = threading.Event()

    def first() -> None:
        with target.begin() as conn:
            target.lock_for_write(conn, "orders")
            events.append("first locked")
            first_locked.set()
            time.sleep(0.5)
            events.append("first commits")

    def second() -> None:
        first_locked.wait(5)
        with target.begin() as conn:
            target.lock_for_write(conn, "orders")
            events.append("second locked")

    def other_table() -> None:
        first_locked.wait(5)
        with target.begin() as conn:
            target.lock_for_write(conn, "items")
            events.append("items locked")

    threads = [threading.Thread(target=f) for f in (first, second, other_table)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    target.close()
    # The same table waits for the commit; another table does not.
    assert events.index("second locked") > events.index("first commits")
    assert events.index("items locked") < events.index("first commits")
