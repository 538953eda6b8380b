"""The lab cases of `make bench`: the no-op deploy against the krops-equivalent and the floor, and a one-file change
in a 10 MB tree, measured side by side in one run on the lab (LAB_NET as the lab's, LAB_HOSTS >= the largest
--hosts). What is measured is whatever `ansible-playbook site.yml` does: nothing here knows the deploy's tasks.

- a generated inventory (a temporary folder outside the repo, removed at the end): one machine per lab host, each a
  copy of lab/inventory's machine1 (web app + LNbits); machine1 also gets `bench-10mb`, a 10 MB tree pushed through
  aiolabs_nixos_sources_trees. The web-app builds live in $AIOLABS_CACHE/bench-webapp, kept between runs;
- a converging first deploy of every host (timed on its own);
- then, interleaved and repeated (median of --repeat), for each --hosts count N (machine1..machineN):
  ours: `ansible-playbook site.yml -l machine1..N`, a no-op, with a fresh SSH ControlPath folder (no master
  connection left over from a previous run); krops-equivalent: per host in parallel, one ssh that checks the
  /var/src/.populate sentinel and sets the links (nixos-config), an rsync of each folder of the host's /var/src from
  its controller source (the options of our push) and `ssh root@host NIX_PATH=/var/src nixos-rebuild switch`, as
  krops does; floor: one ssh per host, in parallel, checksumming /var/src (find + sha256sum);
- counts from the same runs: task executions per host (PLAY RECAP), nixos-rebuild evaluations (the stand-in's
  /run/lab/nixos-rebuild.calls on each host, read before and after through /proc/PID/root), items a
  krops-equivalent rsync changed (0 on a true no-op: a sanity check of the source mapping);
- the change case on machine1: one small file of bench-10mb edited, then ours (`-l machine1`) and a plain rsync of
  the tree (same options), each through a byte-counting TCP proxy in front of machine1's sshd (ansible_port set to
  it), so both count every byte their SSH connections sent; ours is also measured as a no-op through the proxy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fleet
import yaml
from fleet import Series, fmt_bytes, fmt_ratio, fmt_seconds, ratio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.system.lab.conftest import reset_to_stock  # noqa: E402  (the lab's own reset, test infrastructure)

LAB = REPO / "lab"
KEY = LAB / "run" / "ssh" / "id_ed25519"
OUT = REPO / "bench" / "out"
CACHE = Path(os.environ.get("AIOLABS_CACHE", Path.home() / ".cache" / "aiolabs-nixos"))
TREE_NAME = "bench-10mb"
TIMEOUT = 1800
SSH_OPTS = ["-i", str(KEY), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]  # fmt: skip
# The rsync options of our /var/src push (roles/sources/tasks/push_tree.yml: ansible.posix.synchronize with
# recursive, links, copy_links, perms, checksum, delete, compress (its default) and --delete-excluded), plus
# aiolabs_nixos_sources_excludes. Keep in step with the push.
PUSH_RSYNC = ["--recursive", "--links", "--copy-links", "--perms", "--checksum", "--delete", "--delete-excluded",
              "--compress"]  # fmt: skip


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def push_excludes() -> list[str]:
    defaults = yaml.safe_load((REPO / "roles" / "sources" / "defaults" / "main.yml").read_text())
    return [f"--exclude={p}" for p in defaults.get("aiolabs_nixos_sources_excludes", [])]


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    pid: int

    def ssh(self, command: str, timeout: float = 600, port: int = 22) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", *SSH_OPTS, "-p", str(port), f"root@{self.address}", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def out(self, command: str) -> str:
        proc = self.ssh(command)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: {command!r} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc.stdout

    def evaluations(self) -> int:
        """Evaluations the nixos-rebuild stand-in has logged on this host (read from outside, no ssh)."""
        try:
            return fleet.count_evaluations(Path(f"/proc/{self.pid}/root/run/lab/nixos-rebuild.calls").read_text())
        except FileNotFoundError:
            return 0


def lab_hosts() -> list[LabHost]:
    proc = subprocess.run([str(LAB / "labctl"), "status", "--json"], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    rows = json.loads(proc.stdout)["hosts"] if proc.stdout.strip().startswith("{") else []
    hosts = [LabHost(r["host"], r["address"], int(r["pid"])) for r in rows if r["state"] == "running" and r["ssh"]]
    return sorted(hosts, key=lambda h: int(h.name.removeprefix("machine")))


def rsync_argv(src: Path, host: LabHost, name: str, port: int = 22, extra: Sequence[str] = ()) -> list[str]:
    rsh = shlex.join(["ssh", *SSH_OPTS, "-p", str(port)])
    dest = f"root@{host.address}:/var/src/{name}/"
    return ["rsync", *PUSH_RSYNC, *push_excludes(), *extra, "-e", rsh, f"{src}/", dest]


# --------------------------------------------------------------------------- a byte-counting TCP proxy


class CountingProxy:
    """Listens on (address, a free port) and forwards every connection to (address, 22), counting the bytes the
    client sent and received."""

    def __init__(self, address: str) -> None:
        self.upstream = (address, 22)
        self.server = socket.create_server((address, 0))
        self.port = self.server.getsockname()[1]
        self.sent = 0
        self.received = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, sent: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                with self.lock:
                    if sent:
                        self.sent += len(data)
                    else:
                        self.received += len(data)
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def take(self) -> tuple[int, int]:
        """(sent, received) since the last take."""
        time.sleep(0.3)  # let the pumps drain what the finished process wrote last
        with self.lock:
            counts = (self.sent, self.received)
            self.sent = self.received = 0
        return counts

    def close(self) -> None:
        self.server.close()


# --------------------------------------------------------------------------- the runs


@dataclass
class NoopResults:
    hosts: list[int]
    ours: dict[int, Series] = field(default_factory=dict)
    krops: dict[int, Series] = field(default_factory=dict)
    floor: dict[int, Series] = field(default_factory=dict)
    tasks_max: dict[int, Series] = field(default_factory=dict)
    tasks_mean: dict[int, Series] = field(default_factory=dict)
    changed: dict[int, Series] = field(default_factory=dict)
    evaluations: dict[int, Series] = field(default_factory=dict)  # per host, ours
    krops_evaluations: dict[int, Series] = field(default_factory=dict)
    krops_items: dict[int, Series] = field(default_factory=dict)
    converge_s: float | None = None


@dataclass
class ChangeResults:
    tree_bytes: int = 0
    ours_s: Series = field(default_factory=Series)
    ours_bytes: Series = field(default_factory=Series)
    ours_noop_bytes: Series = field(default_factory=Series)
    ours_evaluations: Series = field(default_factory=Series)
    rsync_s: Series = field(default_factory=Series)
    rsync_bytes: Series = field(default_factory=Series)


class Bench:
    def __init__(self, host_counts: Sequence[int], repeat: int, keep: bool = False) -> None:
        self.host_counts = sorted(set(host_counts))
        self.repeat = repeat
        self.keep = keep
        hosts = lab_hosts()
        need = max(self.host_counts)
        if len(hosts) < need or not KEY.is_file():
            raise SystemExit(
                f"bench: the lab cases need {need} running lab hosts, found {len(hosts)} "
                f"(LAB_NET={os.environ.get('LAB_NET', '127.0.1')}): run LAB_HOSTS={need} lab/labctl up"
            )
        self.hosts = hosts[:need]
        self.work = Path(tempfile.mkdtemp(prefix="aiolabs-bench."))
        self.inventory = self.work / "inventory"
        self.tree = self.work / "trees" / TREE_NAME
        self.small_files = fleet.make_tree(self.tree)
        self.webapp_root = CACHE / "bench-webapp"
        self.webapp_root.mkdir(parents=True, exist_ok=True)
        fleet.generate_inventory(
            self.inventory, [(h.name, h.address) for h in self.hosts], REPO, self.webapp_root,
            {self.hosts[0].name: [fleet.Tree(TREE_NAME, self.tree)]},
        )  # fmt: skip
        self.plans: dict[str, tuple[list[tuple[str, Path]], list[tuple[str, str]]]] = {}
        self.edits = 0

    def cleanup(self) -> None:
        if self.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # ours -----------------------------------------------------------------

    def playbook(self, hosts: Sequence[LabHost], *extra: str) -> tuple[float, dict[str, dict[str, int]], str]:
        cp_dir = Path(tempfile.mkdtemp(prefix="cp.", dir=self.work))
        env = dict(os.environ)
        env.update({"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
                    "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp_dir), "PYTHONDONTWRITEBYTECODE": "1"})  # fmt: skip
        env.setdefault("NIX_CONFIG", "substituters =\nexperimental-features = nix-command flakes\n"
                       "build-users-group =\nsandbox = false")  # fmt: skip
        argv = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(self.inventory), str(REPO / "site.yml"),
                "-l", ",".join(h.name for h in hosts), *extra]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO, env=env, check=False)
        elapsed = time.perf_counter() - start
        for sock in cp_dir.iterdir():  # end the master connections the run left (not timed)
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"], capture_output=True,
                           timeout=30, check=False)  # fmt: skip
        shutil.rmtree(cp_dir, ignore_errors=True)
        recap = fleet.parse_recap(proc.stdout)
        bad = [h.name for h in hosts if h.name not in recap or recap[h.name]["failed"] or recap[h.name]["unreachable"]]
        if proc.returncode != 0 or bad:
            raise RuntimeError(f"ansible-playbook failed (rc={proc.returncode}, hosts {bad}):\n"
                               f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")  # fmt: skip
        return elapsed, recap, proc.stdout

    def converge(self) -> float:
        # From a known state: every bench host as a fresh install (whatever a test run left on it,
        # e.g. a /var/src without its guard, which the deploy rightly refuses).
        log(f"resetting {len(self.hosts)} hosts to their stock first boot ...")
        names = [h.name for h in self.hosts]
        reset_to_stock(names)
        self.hosts = [h for h in lab_hosts() if h.name in names]  # new pids (each host was restarted)
        log(f"converging first deploy of {len(self.hosts)} hosts (timed on its own) ...")
        elapsed, _, _ = self.playbook(self.hosts)
        log(f"converged in {elapsed:.1f} s")
        self._plan_krops()
        return elapsed

    # krops-equivalent and floor ------------------------------------------------

    def _hostvars(self, host: LabHost) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        group_vars = sorted((self.inventory / "group_vars").glob("*.yml"))
        files = [*group_vars, self.inventory / "host_vars" / f"{host.name}.yml"]
        for f in files:
            merged.update(yaml.safe_load(f.read_text()) or {})
        return {k: v.replace("{{ inventory_dir }}", str(self.inventory)) if isinstance(v, str) else v
                for k, v in merged.items()}  # fmt: skip

    def _plan_krops(self) -> None:
        """Each host's /var/src folders and links, and the controller source of each folder (a copy taken from the
        host now for a folder the deploy generates, such as config-machine)."""
        for host in self.hosts:
            entries = fleet.parse_var_src(host.out("find /var/src -mindepth 1 -maxdepth 1 -printf '%f\\t%y\\t%l\\n'"))
            webapp_dir = Path(os.path.realpath(self.webapp_root)) / host.name
            sources = fleet.tree_sources(entries, self._hostvars(host), REPO, webapp_dir)
            trees: list[tuple[str, Path]] = []
            for name, source in sources.items():
                src = source or self.work / "krops" / host.name / name
                if source is None:
                    src.mkdir(parents=True, exist_ok=True)
                    rsh = shlex.join(["ssh", *SSH_OPTS])
                    subprocess.run(["rsync", "-rlp", "-e", rsh, f"root@{host.address}:/var/src/{name}/", f"{src}/"],
                                   check=True, capture_output=True, timeout=600)  # fmt: skip
                trees.append((name, src))
            links = [(e.name, e.target) for e in entries if e.kind == "l"]
            self.plans[host.name] = (trees, links)
            log(f"krops plan {host.name}: " + ", ".join(f"{n} <- {s}" for n, s in trees)
                + "; links " + ", ".join(f"{n} -> {t}" for n, t in links))  # fmt: skip

    def _krops_host(self, host: LabHost) -> int:
        trees, links = self.plans[host.name]
        script = "test -e /var/src/.populate" + "".join(
            f" && ln -sfn {shlex.quote(t)} /var/src/{shlex.quote(n)}" for n, t in links
        )
        if host.ssh(script).returncode != 0:
            raise RuntimeError(f"{host.name}: krops-equivalent: no /var/src/.populate")
        items = 0
        for name, src in trees:
            proc = subprocess.run(rsync_argv(src, host, name, extra=["--out-format=%i %n"]), capture_output=True,
                                  text=True, timeout=600, check=False)  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"{host.name}: rsync of {name} failed: {proc.stderr[-2000:]}")
            items += sum(1 for line in proc.stdout.splitlines() if line.strip() and not line.startswith("."))
        proc = host.ssh("NIX_PATH=/var/src nixos-rebuild switch")
        if proc.returncode != 0:
            raise RuntimeError(f"{host.name}: nixos-rebuild switch failed: {proc.stderr[-3000:]}")
        return items

    @staticmethod
    def _parallel(hosts: Sequence[LabHost], fn: Callable[[LabHost], int]) -> tuple[float, int]:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            total = sum(pool.map(fn, hosts))
        return time.perf_counter() - start, total

    @staticmethod
    def _floor_host(host: LabHost) -> int:
        proc = host.ssh("find /var/src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum")
        if proc.returncode != 0:
            raise RuntimeError(f"{host.name}: floor checksum failed: {proc.stderr[-2000:]}")
        return 0

    # the no-op case ----------------------------------------------------------

    def noop(self) -> NoopResults:
        res = NoopResults(self.host_counts)
        for n in self.host_counts:
            for d in (res.ours, res.krops, res.floor, res.tasks_max, res.tasks_mean, res.changed, res.evaluations,
                      res.krops_evaluations, res.krops_items):  # fmt: skip
                d[n] = Series()
        for r in range(self.repeat):
            for n in self.host_counts:
                hosts = self.hosts[:n]
                runs = [self._ours, self._krops, self._floor]
                k = r % len(runs)  # rotate the order per repeat: drift in the machine's load hits every side
                for step in runs[k:] + runs[:k]:
                    step(res, hosts)
                log(f"repeat {r + 1}/{self.repeat}, {n} hosts: ours {res.ours[n].values[-1]:.1f} s, "
                    f"krops {res.krops[n].values[-1]:.1f} s, floor {res.floor[n].values[-1]:.2f} s")  # fmt: skip
        return res

    def _ours(self, res: NoopResults, hosts: Sequence[LabHost]) -> None:
        n = len(hosts)
        before = sum(h.evaluations() for h in hosts)
        elapsed, recap, _ = self.playbook(hosts)
        res.ours[n].add(elapsed)
        res.evaluations[n].add((sum(h.evaluations() for h in hosts) - before) / n)
        tasks = [fleet.task_executions(recap[h.name]) for h in hosts]
        res.tasks_max[n].add(max(tasks))
        res.tasks_mean[n].add(sum(tasks) / n)
        res.changed[n].add(sum(recap[h.name]["changed"] for h in hosts))

    def _krops(self, res: NoopResults, hosts: Sequence[LabHost]) -> None:
        n = len(hosts)
        before = sum(h.evaluations() for h in hosts)
        elapsed, items = self._parallel(hosts, self._krops_host)
        res.krops[n].add(elapsed)
        res.krops_evaluations[n].add((sum(h.evaluations() for h in hosts) - before) / n)
        res.krops_items[n].add(items)

    def _floor(self, res: NoopResults, hosts: Sequence[LabHost]) -> None:
        elapsed, _ = self._parallel(hosts, self._floor_host)
        res.floor[len(hosts)].add(elapsed)

    # the change case ---------------------------------------------------------

    def _edit(self) -> None:
        """Rewrite one small file of the tree (same size, new bytes)."""
        self.edits += 1
        path = self.small_files[len(self.small_files) // 2]
        path.write_bytes(os.urandom(path.stat().st_size))

    def change(self) -> ChangeResults:
        host = self.hosts[0]
        res = ChangeResults(tree_bytes=fleet.tree_size(self.tree))
        proxy = CountingProxy(host.address)
        try:
            port = ["-e", f"ansible_port={proxy.port}"]
            for r in range(self.repeat):
                proxy.take()
                self.playbook([host], *port)
                res.ours_noop_bytes.add(proxy.take()[0])
                steps = [self._change_ours, self._change_rsync]
                for step in steps[r % 2 :] + steps[: r % 2]:
                    step(res, host, proxy, port)
                log(f"change repeat {r + 1}/{self.repeat}: ours {res.ours_s.values[-1]:.1f} s "
                    f"{fmt_bytes(res.ours_bytes.values[-1])}, rsync {res.rsync_s.values[-1]:.2f} s "
                    f"{fmt_bytes(res.rsync_bytes.values[-1])}")  # fmt: skip
        finally:
            proxy.close()
        return res

    def _change_ours(self, res: ChangeResults, host: LabHost, proxy: CountingProxy, port: list[str]) -> None:
        self._edit()
        proxy.take()
        before = host.evaluations()
        elapsed, _, _ = self.playbook([host], *port)
        res.ours_s.add(elapsed)
        res.ours_bytes.add(proxy.take()[0])
        res.ours_evaluations.add(host.evaluations() - before)

    def _change_rsync(self, res: ChangeResults, host: LabHost, proxy: CountingProxy, _port: list[str]) -> None:
        self._edit()
        proxy.take()
        start = time.perf_counter()
        subprocess.run(rsync_argv(self.tree, host, TREE_NAME, port=proxy.port), check=True, capture_output=True,
                       timeout=600)  # fmt: skip
        res.rsync_s.add(time.perf_counter() - start)
        res.rsync_bytes.add(proxy.take()[0])


# --------------------------------------------------------------------------- report


def report_noop(res: NoopResults) -> str:
    rows = [
        [
            str(n), fmt_seconds(res.ours[n].median), fmt_seconds(res.krops[n].median), fmt_seconds(res.floor[n].median),
            fmt_ratio(ratio(res.ours[n].median, res.krops[n].median)),
            fmt_ratio(ratio(res.ours[n].median, res.floor[n].median)),
            f"{res.tasks_max[n].median:g} / {res.tasks_mean[n].median:.1f}", f"{res.changed[n].median:g}",
            f"{res.evaluations[n].median:g}", f"{res.krops_evaluations[n].median:g}", f"{res.krops_items[n].median:g}",
        ]
        for n in res.hosts
    ]  # fmt: skip
    header = [
        "hosts",
        "ours (site.yml no-op)",
        "krops-equivalent",
        "floor",
        "ours/krops",
        "ours/floor",
        "tasks/host max / mean",
        "changed",
        "evals/host ours",
        "evals/host krops",
        "krops items changed",
    ]
    return fleet.table(header, rows)  # fmt: skip


def report_change(res: ChangeResults) -> str:
    sent, noop = res.ours_bytes.median, res.ours_noop_bytes.median
    above = None if sent is None or noop is None else sent - noop
    rows = [
        ["ours: site.yml -l machine1 after a one-file edit", fmt_seconds(res.ours_s.median),
         fmt_bytes(res.ours_bytes.median), fmt_bytes(above), f"{res.ours_evaluations.median:g}"],
        ["ours: site.yml -l machine1, no-op (same proxy)", "", fmt_bytes(noop), "", ""],
        ["plain rsync of the tree after a one-file edit", fmt_seconds(res.rsync_s.median),
         fmt_bytes(res.rsync_bytes.median), "", ""],
        ["ours / plain rsync", fmt_ratio(ratio(res.ours_s.median, res.rsync_s.median)),
         fmt_ratio(ratio(res.ours_bytes.median, res.rsync_bytes.median)),
         fmt_ratio(ratio(above, res.rsync_bytes.median)), ""],
    ]  # fmt: skip
    header = [f"one-file change in a {fmt_bytes(res.tree_bytes)} tree", "time", "bytes sent", "above the no-op",
              "evaluations"]  # fmt: skip
    return fleet.table(header, rows)


def plot(res: NoopResults, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, series, style in (("ansible-playbook site.yml (no-op)", res.ours, "o-"),
                                 ("krops-equivalent (rsync + nixos-rebuild switch)", res.krops, "s-"),
                                 ("floor (one ssh checksum per host)", res.floor, "^-")):  # fmt: skip
        xs = [n for n in res.hosts if series[n].values]
        ys = [series[n].median or 0.0 for n in xs]
        lo = [y - min(series[n].values) for n, y in zip(xs, ys, strict=True)]
        hi = [max(series[n].values) - y for n, y in zip(xs, ys, strict=True)]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style, capsize=3, label=label)
    ax.set_xlabel("hosts")
    ax.set_ylabel("seconds (median; bars: min-max)")
    ax.set_title(f"No-op deploy on the lab (median of {max(len(s.values) for s in res.ours.values())} runs)")
    ax.set_xticks(res.hosts)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _series_json(d: dict[int, Series]) -> dict[str, list[float]]:
    return {str(k): v.values for k, v in d.items()}


@contextlib.contextmanager
def bench(host_counts: Sequence[int], repeat: int, keep: bool) -> Iterator[Bench]:
    b = Bench(host_counts, repeat, keep)
    try:
        yield b
    finally:
        b.cleanup()


NOOP_KEYS = ("ours", "krops", "floor", "tasks_max", "tasks_mean", "changed", "evaluations", "krops_evaluations",
             "krops_items")  # fmt: skip
CHANGE_KEYS = ("ours_s", "ours_bytes", "ours_noop_bytes", "ours_evaluations", "rsync_s", "rsync_bytes")
RESULTS = OUT / "lab-results.json"


def print_noop(noop: NoopResults, repeat: int) -> None:
    print(f"\nno-op deploy, median of {repeat}, side by side in one run:\n")
    sides = {
        "`ansible-playbook site.yml` (no-op)": noop.ours,
        "krops-equivalent (rsync each /var/src tree + nixos-rebuild switch, hosts in parallel)": noop.krops,
        "floor (one ssh per host that checksums /var/src, in parallel)": noop.floor,
    }
    print(fleet.by_hosts_table({k: {n: v[n].median for n in noop.hosts} for k, v in sides.items()}, noop.hosts))
    print()
    print(report_noop(noop))
    ours = {n: noop.ours[n].median for n in noop.hosts}
    krops = {n: noop.krops[n].median for n in noop.hosts}
    evals = noop.evaluations[max(noop.hosts)].median
    tasks = max((noop.tasks_max[n].median or 0.0) for n in noop.hosts)
    print("\ntargets of issue 10 (reported, not asserted):\n")
    print(fleet.targets_table(fleet.targets(ours, krops, evals, tasks)))
    print(f"\nplot: {plot(noop, OUT / 'noop-vs-hosts.png')}")


def print_change(change: ChangeResults, repeat: int) -> None:
    print(f"\none-file change in the {TREE_NAME} tree of machine1, median of {repeat}:\n")
    print(report_change(change))


def save(results: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def report(path: Path) -> int:
    """Print the tables and targets and redraw the plot from a run's raw numbers (lab-results.json)."""
    results = json.loads(path.read_text())
    repeat = int(results.get("repeat", 0))
    if "converge_s" in results:
        print(f"first deploy (converging): {results['converge_s']:.1f} s (not part of the comparison)")
    if "noop" in results:
        noop = NoopResults([int(n) for n in results["hosts"]])
        for key in NOOP_KEYS:
            setattr(noop, key, {int(n): Series(list(v)) for n, v in results["noop"][key].items()})
        print_noop(noop, repeat)
    if "change" in results:
        change = ChangeResults(tree_bytes=int(results["change"]["tree_bytes"]))
        for key in CHANGE_KEYS:
            setattr(change, key, Series(list(results["change"][key])))
        print_change(change, repeat)
    return 0


def run(names: Sequence[str], host_counts: Sequence[int], repeat: int, keep: bool = False) -> int:
    """The lab cases named (noop, change), one run: converge, then each case. The raw numbers go to
    bench/out/lab-results.json as each case ends (`bench/run.py --report` prints them again)."""
    with bench(host_counts, repeat, keep) as b:
        converge = b.converge()
        print(f"\nfirst deploy (converging) of {len(b.hosts)} hosts: {converge:.1f} s (not part of the comparison)")
        results: dict[str, Any] = {"converge_s": converge, "hosts": b.host_counts, "repeat": repeat}
        if "noop" in names:
            noop = b.noop()
            results["noop"] = {key: _series_json(getattr(noop, key)) for key in NOOP_KEYS}
            save(results)
            print_noop(noop, repeat)
        if "change" in names:
            change = b.change()
            results["change"] = {"tree_bytes": change.tree_bytes} | {key: getattr(change, key).values
                                                                     for key in CHANGE_KEYS}  # fmt: skip
            save(results)
            print_change(change, repeat)
        print(f"\nraw numbers: {RESULTS}")
    return 0
