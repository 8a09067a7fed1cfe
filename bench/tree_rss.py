"""Peak resident memory of a whole process tree (the process and its worker processes).

A process's own VmHWM misses the forked workers, and summing their peaks overstates (they
peak at different moments). `TreePeak` samples the tree's summed RSS from /proc every few
milliseconds on a thread and keeps the highest sum. RSS counts a page shared by forked
workers once per process; PSS (proportional set size) splits it among them, so the tree's PSS
is the memory the tree really holds. Both peaks are kept.
"""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType

__all__ = ["TreePeak", "tree_mb"]


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                out.extend(int(p) for p in fh.read().split())
    except OSError:
        pass
    return out


def _rss_pss_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def tree_mb(root: int) -> tuple[float, float]:
    """(RSS, PSS) of ``root`` and all its descendants now, each summed, in MB."""
    rss = pss = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        r, p = _rss_pss_kb(pid)
        rss, pss = rss + r, pss + p
        todo.extend(_children(pid))
    return rss / 1024, pss / 1024


class TreePeak:
    """``with TreePeak(pid) as peak: ...`` then ``peak.mb`` / ``peak.pss_mb``: the highest
    summed RSS / PSS seen."""

    def __init__(self, root: int | None = None, interval: float = 0.01) -> None:
        self.root = root or os.getpid()
        self.interval = interval
        self.mb = 0.0
        self.pss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._take()
            time.sleep(self.interval)

    def _take(self) -> None:
        rss, pss = tree_mb(self.root)
        self.mb, self.pss_mb = max(self.mb, rss), max(self.pss_mb, pss)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._take()
