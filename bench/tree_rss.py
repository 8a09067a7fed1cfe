"""Peak resident memory of a whole process tree (the process and its worker processes).

A process's own VmHWM misses the forked workers, and summing their peaks overstates (they
peak at different moments). `TreePeak` samples the tree's summed RSS and keeps the highest
sum. RSS counts a page shared by forked workers once per process; PSS (proportional set size)
splits it among them, so the tree's PSS is the memory the tree really holds. Both peaks are
kept.

The sampler is a separate process, not a thread of the measured one: reading
``/proc/<pid>/smaps_rollup`` walks the page tables of every mapping, and at a 10 ms cadence a
thread doing that took ~15 % of a core and the measured process's GIL (measured with
``perf``: ``smaps_account`` was 8.7 % of all samples of a 1M-row e2e run). RSS comes from
``statm`` (constant cost) every 20 ms; PSS, which needs the page walk, every second, so its
peak is a close lower bound.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import TracebackType

__all__ = ["TreePeak", "tree_mb"]

_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
_PSS_EVERY = 50  # RSS samples per PSS sample


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                out.extend(int(p) for p in fh.read().split())
    except OSError:
        pass
    return out


def _tree(root: int, skip: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid != skip:
            pids.append(pid)
            todo.extend(_children(pid))
    return pids


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * _PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_mb(root: int, skip: int = -1) -> tuple[float, float]:
    """(RSS, PSS) of ``root`` and all its descendants (but ``skip``) now, summed, in MB."""
    pids = _tree(root, skip)
    return sum(map(_rss_kb, pids)) / 1024, sum(map(_pss_kb, pids)) / 1024


def _watch(root: int, interval: float) -> None:
    """The sampler process: sample until SIGTERM, then print both peaks. (Not until stdin
    closes: worker processes forked later inherit the pipe's write end and keep it open.)"""
    import signal

    stop: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    me = os.getpid()
    rss_peak = pss_peak = 0.0
    n = 0
    while not stop:
        pids = _tree(root, me)
        rss_peak = max(rss_peak, sum(map(_rss_kb, pids)) / 1024)
        if n % _PSS_EVERY == 0:
            pss_peak = max(pss_peak, sum(map(_pss_kb, pids)) / 1024)
        n += 1
        time.sleep(interval)
    rss, pss = tree_mb(root, me)  # the state at the end counts too
    print(max(rss_peak, rss), max(pss_peak, pss), flush=True)


class TreePeak:
    """``with TreePeak(pid) as peak: ...`` then ``peak.mb`` / ``peak.pss_mb``: the highest
    summed RSS / PSS seen."""

    def __init__(self, root: int | None = None, interval: float = 0.02) -> None:
        self.root = root or os.getpid()
        self.interval = interval
        self.mb = 0.0
        self.pss_mb = 0.0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> TreePeak:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, str(self.root), str(self.interval)],
            stdout=subprocess.PIPE, text=True,
        )
        time.sleep(0.05)  # let it take its first sample before the work starts
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._proc is not None
        self._proc.terminate()
        out, _ = self._proc.communicate()
        rss, pss = (float(v) for v in out.split())
        self.mb, self.pss_mb = rss, pss


if __name__ == "__main__":
    _watch(int(sys.argv[1]), float(sys.argv[2]))
