#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian 12 machine, idempotently:
#   1. Debian packages (Nix, debootstrap/mmdebstrap for the lab, rsync, ssh), and the
#      controller's /etc/nix/nix.conf when it lacks what root-only Nix needs
#      (tools/controller-nix.sh),
#   2. a Python venv from requirements.txt, cached per requirements digest,
#   3. the collection the checkout's ansible.cfg and tests use (ansible.posix: callbacks),
#      without Galaxy (unpacked from the `ansible` wheel on PyPI), plus a link that makes
#      this checkout importable as `aiolabs.nixos`.
# Caches live under $AIOLABS_CACHE (default ~/.cache/aiolabs-nixos); nothing
# depends on them being there.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${AIOLABS_CACHE:-$HOME/.cache/aiolabs-nixos}
python=${PYTHON:-python3}
# The `ansible` release whose bundled collections we unpack: 12.x is the line
# built on ansible-core 2.19, like requirements.txt.
ansible_bundle=${ANSIBLE_BUNDLE_VERSION:-12.3.0}

say() { printf '==> %s\n' "$*"; }
# This machine's pip config may name local indexes that do not exist; pip then
# warns once per package. Keep real errors, drop that noise.
quiet_pip() { "$@" 2> >(grep -v "^WARNING: Location 'file://" >&2); }

apt_packages=(nix-bin debootstrap mmdebstrap rsync openssh-client openssh-server
              iproute2 procps libdbi-perl curl git make shellcheck)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The controller's Nix, for a person's own shell as for tools/*.sh (which also export these
# settings in NIX_CONFIG): on a machine without the nixbld group, add to /etc/nix/nix.conf what
# root-only Nix needs and does not set yet (tools/controller-nix.sh says what and why).
if [[ $(id -u) -eq 0 || -w ${AIOLABS_NIX_CONF:-/etc/nix/nix.conf} ]]; then
  "$repo/tools/controller-nix.sh"
else
  say "controller Nix: not root, /etc/nix/nix.conf left alone (see tools/controller-nix.sh)"
fi

# The web-app role builds with Node on the controller. Machines of this kind
# ship Node 20; elsewhere fall back to Debian's (check the example app's
# engines if that is older than Vite wants).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "installing Node.js and npm (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

mkdir -p "$cache"
req_digest=$(sha256sum <"$repo/requirements.txt" | cut -c1-16)
venv="$cache/venv-$req_digest"
if [[ ! -x "$venv/bin/python" || ! -f "$venv/.complete" ]]; then
  say "creating venv $venv from requirements.txt"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  quiet_pip "$venv/bin/pip" install -q --disable-pip-version-check -r "$repo/requirements.txt"
  touch "$venv/.complete"
fi
ln -sfn "$venv" "$repo/.venv"

wheel_dir="$cache/wheels"
wheel="$wheel_dir/ansible-$ansible_bundle-py3-none-any.whl"
if [[ ! -f "$wheel" ]]; then
  say "downloading the ansible $ansible_bundle bundle (for ansible.posix and awx.awx)"
  mkdir -p "$wheel_dir"
  quiet_pip "$venv/bin/pip" download -q --disable-pip-version-check --no-deps \
    "ansible==$ansible_bundle" -d "$wheel_dir"
fi
# The collections unpacked: ansible.posix (the checkout's ansible.cfg and the tests use its
# callbacks) and awx.awx (24.6.1 in ansible 12.3.0) for playbooks/awx/configure.yml, so lint and
# syntax checks resolve its modules. The cache
# folder is named after the list, so a changed list unpacks again.
bundled=(ansible/posix awx/awx)
colls="$cache/collections-$ansible_bundle-$(printf '%s\n' "${bundled[@]}" | sha256sum | cut -c1-8)"
if [[ ! -f "$colls/.complete" ]]; then
  say "unpacking ${bundled[*]} from the ansible $ansible_bundle wheel"
  rm -rf "$colls"
  "$venv/bin/python" - "$wheel" "$colls" "${bundled[@]}" <<'PY'
import sys, zipfile
wheel, dest, *names = sys.argv[1:]
wanted = tuple(f"ansible_collections/{name}/" for name in names)
with zipfile.ZipFile(wheel) as zf:
    members = [n for n in zf.namelist() if n.startswith(wanted)]
    missing = [w for w in wanted if not any(m.startswith(w) for m in members)]
    if missing:
        sys.exit(f"setup: the ansible wheel {wheel} has no {', '.join(missing)}")
    zf.extractall(dest, members)
PY
  touch "$colls/.complete"
fi
ac="$repo/.collections/ansible_collections"
for name in aiolabs/nixos "${bundled[@]}"; do mkdir -p "$ac/${name%/*}"; done
ln -sfn "$repo" "$ac/aiolabs/nixos"
for name in "${bundled[@]}"; do ln -sfn "$colls/ansible_collections/$name" "$ac/$name"; done
# A checkout set up before community.general was dropped (nothing used it) still links it.
rm -f "$ac/community/general"
rmdir "$ac/community" 2>/dev/null || true
say "ready: $(readlink "$repo/.venv")/bin/ansible $("$venv/bin/ansible" --version | head -1 | sed 's/.*\[core /core /;s/\]//')"
