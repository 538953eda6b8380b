#!/usr/bin/env bash
# Run `ansible-test sanity` on this checkout. ansible-test insists on a tree at
# .../ansible_collections/<namespace>/<name>/, so we mirror the checkout's files
# (tracked and untracked-but-not-ignored) into such a tree under the cache and
# run there. Extra arguments go to ansible-test (e.g. --test validate-modules).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${AIOLABS_CACHE:-$HOME/.cache/aiolabs-nixos}
root="$cache/sanity"
dest="$root/ansible_collections/aiolabs/nixos"
python_version=3.11
export PATH="$repo/.venv/bin:$PATH"

# ansible-test bootstraps pip in its venvs with a get-pip script from a host
# that is unreachable here. A local stand-in for that script that delegates to
# ensurepip (in a subprocess, so pip keeps this machine's CA settings) lets it
# work offline; where the download works the stand-in is simply never used.
pip_version=$(python - <<'PY'
import re, inspect
import ansible_test._internal.python_requirements as r
print(re.search(r"pip='([0-9.]+)'", inspect.getsource(r)).group(1))
PY
)
stub="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [[ ! -s $stub ]]; then
  mkdir -p "$(dirname "$stub")"
  cat >"$stub" <<'PY'
"""Offline stand-in for get-pip.py, written by aiolabs.nixos tools/sanity.sh.

get-pip.py installs pip (plus setuptools/wheel unless told not to) and the
packages named on its command line. ensurepip provides a pip from the Python
installation; that pip then installs what was asked from the configured index.
"""
import subprocess
import sys

subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.run([sys.executable, "-m", "pip", "install", *args], check=False).returncode)
PY
fi

# Sanity covers what ships in the collection: the tree minus galaxy.yml's
# build_ignore top-level entries that are tooling (the lab is test
# infrastructure run on lab hosts, not collection content).
not_content='^(lab|bench|tools|\.ci)/|^Makefile$'
list_files() {
  (cd "$repo" && git ls-files --cached --others --exclude-standard | grep -Ev "$not_content")
}
mkdir -p "$dest"
list_files | tr '\n' '\0' \
  | rsync -a --delete --from0 --files-from=- "$repo/" "$dest/"
# rsync --files-from does not delete files that vanished from the list: prune them.
list_files | sort >"$root/.wanted"
(cd "$dest" && find . \( -type f -o -type l \) ! -path './tests/output/*' | sed 's|^\./||' | sort) >"$root/.have"
comm -13 "$root/.wanted" "$root/.have" | (cd "$dest" && xargs -r -d '\n' rm -f --)

cd "$dest"
exec ansible-test sanity --python "$python_version" --color "$@"
