from hypothesis import given, settings, Phase, HealthCheck
from tests.core.pipeline import test_conservation_property as t

@settings(max_examples=30, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(history=t.histories)
def test_dbgpg(pg, history):
    try:
        with t._pg_pair(pg) as (a, b):
            t._run(a, b, history)
    except AssertionError as e:
        print("\nFAILHIST", history, "\nERR", str(e)[:300])
        raise
