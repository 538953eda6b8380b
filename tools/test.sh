#!/usr/bin/env bash
# Runs the stages of the test suite. `tools/test.sh all` is `make test`.
# Every stage prints a banner; the first failing stage fails the run.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH="$repo/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$repo/ansible.cfg"
# Nix on the controller, as Debian's nix-bin runs as root with no daemon: no
# binary cache is reachable (without `substituters =` every build first spends
# seconds retrying cache.nixos.org), there is no nixbld group, and the default
# sandbox lacks /bin/sh, so builds run as root without a sandbox.
export NIX_CONFIG=$'substituters =\nexperimental-features = nix-command flakes\nbuild-users-group =\nsandbox = false'
export PYTHONDONTWRITEBYTECODE=1

banner() { printf '\n\033[1m===== %s =====\033[0m\n' "$*"; }

stage_lint() {
  banner "lint: ruff"
  # lab/labctl is Python without a .py name, which `ruff check .` would pass over.
  ruff check . lab/labctl
  ruff format --check . lab/labctl
  banner "lint: mypy (strict on plugins/module_utils)"
  # The plugins are checked under their import name, as Ansible loads them.
  (cd .collections && mypy --config-file ../pyproject.toml -p ansible_collections.aiolabs.nixos.plugins)
  local extra=()
  for d in tests lab bench molecule; do [[ -d $d ]] && extra+=("$d"); done
  mypy --config-file pyproject.toml "${extra[@]}"
  banner "lint: shellcheck"
  git ls-files --cached --others --exclude-standard '*.sh' .ci/run | xargs -r shellcheck
  banner "lint: yamllint"
  yamllint --strict .
  banner "lint: ansible-lint (production profile)"
  ansible-lint
  banner "lint: antsibull-changelog (fragments, changelogs/changelog.yaml)"
  antsibull-changelog lint
}

stage_sanity() {
  banner "ansible-test sanity"
  tools/sanity.sh
}

# Per-stage records for the summary at the end (tools/stage_summary.py): outside the tree,
# so a run leaves no outputs behind.
report_dir=$(mktemp -d "${TMPDIR:-/tmp}/aiolabs-test.XXXXXX")
record="$report_dir/stages.tsv"
current_stage=none

# pytest exits 5 when it collects nothing; that must fail the run, and it does:
# set -e sees any non-zero status. Each call writes a JUnit report for the summary.
run_pytest() {
  local n
  n=$(find "$report_dir" -name "$current_stage-*.xml" | wc -l)
  python -m pytest -p no:cacheprovider --junitxml="$report_dir/$current_stage-$n.xml" "$@"
}

# run_stage NAME FUNCTION: runs one stage with set -e, records its time, exit code and reports.
run_stage() {
  local name=$1 fn=$2 started=$SECONDS rc=0 reports
  current_stage=$name
  # Not `( … ) || rc=$?`: on the left of || bash ignores set -e inside the subshell too.
  set +e
  ( set -e; "$fn" )
  rc=$?
  set -e
  reports=$(find "$report_dir" -name "$name-*.xml" | sort | paste -sd '\t' -)
  printf '%s\t%s\t%s\t%s\n' "$name" "$((SECONDS - started))" "$rc" "$reports" >> "$record"
  return "$rc"
}

lab_is_up=false
bench_started=()
finish() {
  local rc=$?
  if $lab_is_up; then banner "lab: down"; lab/labctl down || true; fi
  if ((${#bench_started[@]})); then
    banner "lab: stop the hosts the benchmark started (${bench_started[*]})"
    for h in "${bench_started[@]}"; do lab/labctl stop "$h" || true; done
  fi
  if [[ -s $record ]]; then banner "stage summary"; python tools/stage_summary.py "$record" || true; fi
  rm -rf "$report_dir"
  exit "$rc"
}
trap finish EXIT

# Two workers for the unit tests and three for the Nix tests (each file one unit of work, as
# tests/system/conftest.py schedules): on the 2-core CI machine the Nix tests wait on Nix more
# than they compute (unit 35 s -> 21 s, Nix 69 s -> 40 s, measured).
stage_unit() {
  banner "unit tests (2 workers)"
  run_pytest -n 2 tests/unit
}

stage_packaging() {
  banner "packaging: build, install, ansible-doc"
  run_pytest -m packaging tests/system
}

stage_controller() {
  banner "controller tests (npm builds, no Nix, no lab)"
  run_pytest -m "slow and not nix and not lab and not packaging" tests/system
}

stage_nix() {
  banner "Nix integration tests (Debian nix-bin and a modern Nix)"
  tools/modern-nix.sh ensure
  run_pytest -n 3 --dist loadscope -m "nix and not lab" tests/system
}

lab_up() {
  # Nine hosts, so each test area has hosts of its own and no test sees
  # another's leftovers: machine1-3 the lab's own tests and the end-to-end
  # deploy, machine4 the nixos_rebuild module, machine5-6 the switch role,
  # machine7 the web app, machine8 atBB, machine9 the switch's recovery paths
  # (rollbacks, reboots, crashes: mostly waiting, so beside the others).
  banner "lab: up (${LAB_TEST_HOSTS:-9} hosts)"
  export LAB_HOSTS=${LAB_TEST_HOSTS:-9}
  lab_is_up=true
  lab/labctl up
}

# One xdist worker per lab host group (tests/system/conftest.py): groups on disjoint hosts run
# side by side, the files of one group in order on one worker.
LAB_WORKERS=${LAB_WORKERS:-6}

stage_lab() {
  banner "lab tests ($LAB_WORKERS workers, one per host group)"
  run_pytest -n "$LAB_WORKERS" --dist loadscope -m "lab and not lab_lifecycle" tests/system
  # Last, because it tears every host down and brings the lab up again.
  banner "lab lifecycle test"
  run_pytest -m lab_lifecycle tests/system
}

# The lab scenario (molecule/default: site.yml on lab machine1 from stock, idempotence, testinfra)
# runs whole: `make molecule` runs it directly; in `make test` it runs in the lab stage, as
# tests/system/lab/test_molecule_default.py, on machine1-3's worker beside the other host groups.
stage_molecule_default() {
  banner "molecule: default (the whole deploy on lab machine1)"
  molecule test -s default
}

# molecule/nixos-vm needs Nix with internet, KVM and qemu, which CI lacks: its playbooks get
# molecule's syntax check (ansible-lint covers them in the lint stage) and a test that its create
# stops at once naming what is missing (tests/system/test_molecule_nixos_vm.py).
stage_molecule() {
  banner "molecule: nixos-vm (syntax, and its create stops at once here)"
  molecule syntax -s nixos-vm
  run_pytest -m molecule tests/system
}

# The benchmark needs LAB_BENCH_HOSTS (12) hosts and leaves the lab as it found it: a lab that was
# down is taken down again; in a lab that was up, the hosts it had to start are stopped again
# (`labctl stop`: their disk state stays, `labctl status` lists them as stopped). Either way the
# hosts it ran on keep the benchmark fleet's last deploy (a test's stock reset undoes that).
lab_up_bench() {
  local want=${LAB_BENCH_HOSTS:-12} running h
  running=$(lab/labctl status --json 2>/dev/null | python3 -c '
import json, sys
print(" ".join(h["host"] for h in json.load(sys.stdin)["hosts"] if h["state"] == "running"))' || true)
  banner "lab: up ($want hosts for the benchmark; running before: ${running:-none})"
  if [[ -z $running ]]; then
    lab_is_up=true
  else
    for ((i = 1; i <= want; i++)); do
      h=machine$i
      [[ " $running " == *" $h "* ]] || bench_started+=("$h")
    done
  fi
  LAB_HOSTS=$want lab/labctl up
}

stage_bench() {
  banner "benchmarks (controller cases, then the lab cases: bench/run.py --help)"
  local args=()
  read -ra args <<< "${BENCH_ARGS:-}"
  python bench/run.py "${args[@]}"
}

case "${1:-all}" in
  lint) run_stage lint stage_lint ;;
  sanity) run_stage sanity stage_sanity ;;
  unit) run_stage unit stage_unit ;;
  packaging) run_stage packaging stage_packaging ;;
  controller) run_stage controller stage_controller ;;
  nix) run_stage nix stage_nix ;;
  system) run_stage nix stage_nix; lab_up; run_stage lab stage_lab ;;
  molecule) lab_up; run_stage molecule-default stage_molecule_default; run_stage molecule stage_molecule ;;
  bench) lab_up_bench; run_stage bench stage_bench ;;
  all)
    start=$SECONDS
    run_stage lint stage_lint
    run_stage sanity stage_sanity
    run_stage unit stage_unit
    run_stage packaging stage_packaging
    run_stage controller stage_controller
    run_stage nix stage_nix
    lab_up
    run_stage lab stage_lab
    run_stage molecule stage_molecule
    banner "all stages passed in $((SECONDS - start)) s"
    ;;
  *) echo "usage: tools/test.sh {all|lint|sanity|unit|packaging|controller|nix|system|molecule|bench}" >&2; exit 2 ;;
esac
