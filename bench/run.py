"""Benchmarks: each case times our code and a baseline side by side, in the same run.

Nothing here asserts a speed; it measures and prints ratios (ours / baseline),
so a slow machine or a busy CI worker shifts both sides alike. Run with
`make bench` (which also brings the lab up for the cases that need it) or
`python bench/run.py [CASE ...] [--hosts 1,3,6,12] [--repeat 3]`.

Controller cases (bench/bench_cases.py): "to_nix 200 machines", "webapp no-op".
Lab cases (bench/lab_cases.py, need LAB_HOSTS >= the largest --hosts): "noop" (site.yml no-op against the
krops-equivalent and the floor, with task and evaluation counts, and the plot bench/out/noop-vs-hosts.png)
and "change" (a one-file change in a 10 MB tree: bytes sent and time, ours against plain rsync); "lab" is both.
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


LAB_CASES = ("noop", "change")


def host_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(n) for n in text.split(",") if n.strip()})
    except ValueError:
        counts = []
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"--hosts must be numbers of hosts separated by commas, got {text!r}")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="cases to run (default: all; lab cases only when the lab is up)")
    parser.add_argument(
        "--hosts",
        type=host_counts,
        default=[1, 3, 6, 12],
        help="lab cases: numbers of hosts to deploy, comma separated (default 1,3,6,12)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="lab cases: repeats, the median is reported (default 3)")
    parser.add_argument("--keep", action="store_true", help="lab cases: keep the generated inventory and trees")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="print the lab tables and redraw the plot from a run's bench/out/lab-results.json",
    )
    args = parser.parse_args()
    if args.report:
        import lab_cases

        return lab_cases.report(args.report)
    controller = cases()
    known = [c.name for c in controller] + [*LAB_CASES, "lab"]
    if args.list:
        print("\n".join(known))
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; cases: {known}")
    names = set(args.names) | (set(LAB_CASES) if "lab" in args.names else set())
    selected = [c for c in controller if not args.names or c.name in names]
    lab = [n for n in LAB_CASES if n in names]
    if not args.names:
        import lab_cases

        if len(lab_cases.lab_hosts()) >= max(args.hosts):
            lab = list(LAB_CASES)
        else:
            print(f"(lab cases skipped: fewer than {max(args.hosts)} lab hosts are up; `make bench` brings them up)")
    if selected:
        run_controller(selected)
    if lab:
        import lab_cases

        return lab_cases.run(lab, args.hosts, args.repeat, args.keep)
    return 0


def run_controller(selected: list[Case]) -> None:
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


if __name__ == "__main__":
    raise SystemExit(main())
