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
  ruff check .
  ruff format --check .
  banner "lint: mypy (strict on plugins/module_utils)"
  # The plugins are checked under their import name, as Ansible loads them.
  (cd .collections && mypy --config-file ../pyproject.toml -p ansible_collections.aiolabs.nixos.plugins)
  local extra=()
  for d in tests lab bench; do [[ -d $d ]] && extra+=("$d"); done
  mypy --config-file pyproject.toml "${extra[@]}"
  banner "lint: shellcheck"
  git ls-files --cached --others --exclude-standard '*.sh' .ci/run | xargs -r shellcheck
  banner "lint: yamllint"
  yamllint --strict .
  banner "lint: ansible-lint (production profile)"
  ansible-lint
}

stage_sanity() {
  banner "ansible-test sanity"
  tools/sanity.sh
}

# pytest exits 5 when it collects nothing; that must fail the run, and it does:
# set -e sees any non-zero status.
run_pytest() { python -m pytest -p no:cacheprovider "$@"; }

stage_unit() {
  banner "unit tests"
  run_pytest tests/unit
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
  run_pytest -m "nix and not lab" tests/system
}

lab_up() {
  # Eight hosts, so each test area has hosts of its own and no test sees
  # another's leftovers: machine1-3 the lab's own tests and the end-to-end
  # deploy, machine4 the nixos_rebuild module, machine5-6 the switch role,
  # machine7 the web app, machine8 atBB.
  banner "lab: up (${LAB_TEST_HOSTS:-8} hosts)"
  export LAB_HOSTS=${LAB_TEST_HOSTS:-8}
  lab/labctl up
  trap 'banner "lab: down"; lab/labctl down' EXIT
}

stage_lab() {
  banner "lab tests"
  run_pytest -m "lab and not lab_lifecycle" tests/system
  # Last, because it tears every host down and brings the lab up again.
  banner "lab lifecycle test"
  run_pytest -m lab_lifecycle tests/system
}

stage_molecule() {
  banner "molecule"
  local s
  for s in molecule/*/molecule.yml; do
    [[ -e $s ]] || continue
    (cd "$repo" && molecule test -s "$(basename "$(dirname "$s")")")
  done
}

stage_bench() {
  banner "benchmarks"
  python bench/run.py
}

case "${1:-all}" in
  lint) stage_lint ;;
  sanity) stage_sanity ;;
  unit) stage_unit ;;
  packaging) stage_packaging ;;
  controller) stage_controller ;;
  nix) stage_nix ;;
  system) stage_nix; lab_up; stage_lab ;;
  molecule) lab_up; stage_molecule ;;
  bench) lab_up; stage_bench ;;
  all)
    start=$SECONDS
    stage_lint
    stage_sanity
    stage_unit
    stage_packaging
    stage_controller
    stage_nix
    lab_up
    stage_lab
    stage_molecule
    banner "all stages passed in $((SECONDS - start)) s"
    ;;
  *) echo "usage: tools/test.sh {all|lint|sanity|unit|packaging|controller|nix|system|molecule|bench}" >&2; exit 2 ;;
esac
