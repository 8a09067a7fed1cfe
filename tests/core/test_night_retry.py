"""Retry budget, backoff and presumed-dead runs of background slices (pure arithmetic)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml

from syncflow_core.config import ConfigError, ScheduleConfig, parse_config
from syncflow_core.night_retry import (
    Attempt,
    attention,
    backoff,
    is_presumed_dead,
    retry_status,
)

BERLIN = ZoneInfo("Europe/Berlin")
SCHED = ScheduleConfig(timezone="Europe/Berlin")  # 19:00-07:00, 4 attempts, 15 min
NIGHT = date(2027, 1, 6)


def _at(hour: int, minute: int = 0, day: int = 6) -> datetime:
    return datetime(2027, 1, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def _failed(key: str, at: datetime, night: date = NIGHT) -> Attempt:
    return Attempt(key, night, "failed", at)


def test_backoff_doubles_from_the_configured_base() -> None:
    assert [backoff(n, SCHED) for n in (1, 2, 3, 4)] == [
        timedelta(minutes=15), timedelta(minutes=30), timedelta(hours=1), timedelta(hours=2)
    ]
    slow = ScheduleConfig(retry_backoff_minutes=20)
    assert backoff(2, slow) == timedelta(minutes=40)
    with pytest.raises(ValueError):
        backoff(0, SCHED)


def test_next_attempt_waits_after_each_failure_then_the_slice_gives_up() -> None:
    runs = [_failed("slice-03", _at(19, 1))]
    state = retry_status(runs, NIGHT, SCHED)["slice-03"]
    assert (state.failures, state.next_attempt_at, state.given_up) == (1, _at(19, 16), False)
    assert state.waiting(_at(19, 15)) and not state.waiting(_at(19, 16))
    runs.append(_failed("slice-03", _at(19, 16)))
    assert retry_status(runs, NIGHT, SCHED)["slice-03"].next_attempt_at == _at(19, 46)
    runs.append(_failed("slice-03", _at(19, 46)))
    assert retry_status(runs, NIGHT, SCHED)["slice-03"].next_attempt_at == _at(20, 46)
    runs.append(_failed("slice-03", _at(20, 46)))
    last = retry_status(runs, NIGHT, SCHED)["slice-03"]
    assert last.given_up and last.failures == 4 and last.next_attempt_at is None
    assert not last.waiting(_at(23))


def test_budget_is_per_night_and_a_success_clears_the_failures() -> None:
    yesterday = [_failed("slice-03", _at(19 + i, day=5), date(2027, 1, 5)) for i in range(4)]
    assert retry_status(yesterday, NIGHT, SCHED) == {}  # a fresh budget tonight
    healed = [_failed("slice-03", _at(19)), Attempt("slice-03", NIGHT, "paused", _at(19, 20))]
    assert retry_status(healed, NIGHT, SCHED) == {}
    # Runs still in flight are no failures yet.
    assert retry_status([Attempt("slice-01", NIGHT, "in_flight", _at(19))], NIGHT, SCHED) == {}


def test_a_smaller_budget_from_config_gives_up_sooner() -> None:
    two = ScheduleConfig(retry_attempts=2)
    runs = [_failed("s", _at(19)), _failed("s", _at(19, 20))]
    assert retry_status(runs, NIGHT, two)["s"].given_up
    assert not retry_status(runs, NIGHT, SCHED)["s"].given_up


def test_run_is_presumed_dead_after_its_window_plus_grace() -> None:
    # The night of 6 January closes at 07:00 Berlin on the 7th; grace 30 min.
    assert not is_presumed_dead(NIGHT, SCHED, _at(7, 29, day=7))
    assert is_presumed_dead(NIGHT, SCHED, _at(7, 30, day=7))
    assert not is_presumed_dead(NIGHT, SCHED, _at(23))
    no_grace = ScheduleConfig(timezone="Europe/Berlin", stale_run_grace_minutes=0)
    assert is_presumed_dead(NIGHT, no_grace, _at(7, 0, day=7))


def test_presumed_dead_follows_the_short_dst_night() -> None:
    # 27/28 March 2027: 07:00 CEST is 05:00 UTC.
    night = date(2027, 3, 27)
    assert not is_presumed_dead(night, SCHED, datetime(2027, 3, 28, 5, 29, tzinfo=UTC))
    assert is_presumed_dead(night, SCHED, datetime(2027, 3, 28, 5, 30, tzinfo=UTC))


def test_attention_lists_slices_that_spent_their_budget_the_last_night_they_ran() -> None:
    runs = [_failed("slice-03", _at(19 + i)) for i in range(4)]
    runs += [Attempt("slice-04", NIGHT, "finished", _at(21))]
    runs += [_failed("slice-05", _at(22))]  # one failure: still within budget
    stuck = attention(runs, SCHED)
    assert list(stuck) == ["slice-03"]
    assert "4 failed background runs" in stuck["slice-03"] and "2027-01-06" in stuck["slice-03"]
    # It ran fine the next night: no longer listed.
    runs.append(Attempt("slice-03", date(2027, 1, 7), "finished", _at(19, day=7)))
    assert attention(runs, SCHED) == {}


def test_retry_settings_are_validated_with_file_entity_and_field() -> None:
    doc = """
sources: {erp: {kind: sql, url: 'sqlite:///erp.db'}}
target: {url: 'sqlite:///t.db'}
entities:
  items:
    source: {connection: erp, table: ITEMS}
    business_key_fields: [ITEM_NO]
    schedule: {retry_attempts: 0}
"""
    with pytest.raises(ConfigError) as err:
        parse_config(yaml.safe_load(doc), "syncflow.yaml")
    text = str(err.value)
    assert "syncflow.yaml" in text and "items" in text and "retry_attempts" in text
