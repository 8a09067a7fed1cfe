"""SyncFlow's pure core: config, normalization, identity, delta, resolution, I/O, pipeline.

Never imports dagster: everything here is usable from a plain script.
"""

__all__: list[str] = []
