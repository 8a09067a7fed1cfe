"""Finding the compiled loops: present where built, None (the fallback's cue) where not."""

from __future__ import annotations

from syncflow_core.compiled import compiled_module


def test_the_built_modules_are_found_and_a_missing_one_is_none() -> None:
    for name in ("_hashloops", "_numscan", "_keyjoin"):
        module = compiled_module(name)
        assert module is not None and module.__name__ == f"syncflow_core.{name}"
    assert compiled_module("_not_built") is None
