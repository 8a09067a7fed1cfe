"""Peak resident memory of a whole process tree (the process and its worker processes).

A process's own VmHWM misses the forked workers, and summing their peaks overstates (they
peak at different moments). `TreePeak` samples the tree's summed RSS from /proc every few
milliseconds on a thread and keeps the highest sum.
"""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType

__all__ = ["TreePeak", "tree_rss_mb"]


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                out.extend(int(p) for p in fh.read().split())
    except OSError:
        pass
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(root: int) -> float:
    """Summed RSS of ``root`` and all its descendants now, in MB."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _rss_kb(pid)
        todo.extend(_children(pid))
    return total / 1024


class TreePeak:
    """``with TreePeak(pid) as peak: ...`` then ``peak.mb``: the highest summed RSS seen."""

    def __init__(self, root: int | None = None, interval: float = 0.01) -> None:
        self.root = root or os.getpid()
        self.interval = interval
        self.mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.mb = max(self.mb, tree_rss_mb(self.root))
            time.sleep(self.interval)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.mb = max(self.mb, tree_rss_mb(self.root))
