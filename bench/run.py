"""Benchmarks: each case times our code and a baseline side by side, in the same run.

Nothing here asserts a speed; it measures and prints ratios (ours / baseline),
so a slow machine or a busy CI worker shifts both sides alike. Run with
`make bench` (which also brings the lab up for the cases that need it) or
`python bench/run.py [CASE ...]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".collections"))
sys.path.insert(0, str(REPO / "bench"))


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    ours: Callable[[], object]
    baseline: Callable[[], object]
    baseline_name: str
    repeat: int = 5


@dataclass(frozen=True)
class Measurement:
    median_s: float
    peak_bytes: int


def measure(func: Callable[[], object], repeat: int) -> Measurement:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return Measurement(statistics.median(times), peak)


def cases() -> list[Case]:
    import bench_cases

    return bench_cases.all_cases()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="cases to run (default: all)")
    args = parser.parse_args()
    selected = [c for c in cases() if not args.names or c.name in args.names]
    print(f"{'case':28} {'ours':>10} {'baseline':>10} {'time ratio':>10} {'peak mem ratio':>14}  baseline")
    for case in selected:
        # Interleave: baseline, ours, so drift in machine load hits both.
        base = measure(case.baseline, case.repeat)
        ours = measure(case.ours, case.repeat)
        ratio = ours.median_s / base.median_s if base.median_s else float("inf")
        mem = ours.peak_bytes / base.peak_bytes if base.peak_bytes else float("inf")
        print(
            f"{case.name:28} {ours.median_s * 1000:9.1f}ms {base.median_s * 1000:9.1f}ms "
            f"{ratio:10.2f} {mem:14.2f}  {case.baseline_name}"
        )
        print(f"{'':28} {case.what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
