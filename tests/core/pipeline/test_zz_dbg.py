import tempfile
from pathlib import Path
from hypothesis import given, settings, Phase, HealthCheck
from tests.core.pipeline import test_conservation_property as t
from tests.core.pipeline.erp import sqlite_urls

@settings(max_examples=120, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(history=t.histories)
def test_dbg(history):
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t._run(*sqlite_urls(Path(tmp)), history)
    except AssertionError as e:
        print("\nFAILHIST", history, "\nERR", str(e)[:300])
        raise
