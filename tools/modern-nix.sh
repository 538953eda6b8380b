#!/usr/bin/env bash
# A second, modern Nix for the integration tests: Debian trixie's nix-bin
# (2.26) in a chroot made with mmdebstrap. Debian bookworm's own nix-bin is 2.8;
# trixie's needs glibc >= 2.38, hence a whole chroot rather than a package.
#
#   tools/modern-nix.sh ensure      build the chroot if it is not there (idempotent,
#                                   atomic: built beside, renamed into place); prints
#                                   nothing on success
#   tools/modern-nix.sh path        print the chroot's path (exit 1 if not built)
#   tools/modern-nix.sh bin         print a directory of wrappers (nix, nix-build,
#                                   nix-store, nix-instantiate, nix-hash) that run
#                                   the chroot's Nix; put it first on PATH
#   tools/modern-nix.sh run CMD...  run CMD inside the chroot, in the current
#                                   directory
#
# The chroot has its own /nix: the two Nix versions never share a store or a
# database (2.26 would upgrade the schema under 2.8's feet). /tmp, /proc, /dev and
# the current directory are bind-mounted at the same paths, in a private mount
# namespace that ends with the command, so absolute paths mean the same thing on
# both sides. Cached under ${AIOLABS_CACHE:-~/.cache/aiolabs-nixos}/nix-trixie-<digest>,
# where the digest covers everything that decides the chroot's contents.
set -euo pipefail

cache=${AIOLABS_CACHE:-$HOME/.cache/aiolabs-nixos}
suite=trixie
mirror=${MODERN_NIX_MIRROR:-http://deb.debian.org/debian}
packages=nix-bin,ca-certificates
# Bump when the recipe below changes in a way the variables above do not show.
recipe_version=1
digest=$(printf '%s\n' "$suite" "$mirror" "$packages" "$recipe_version" | sha256sum | cut -c1-16)
root="$cache/nix-trixie-$digest"

die() { echo "modern-nix: $*" >&2; exit 1; }

ensure() {
  [[ -f "$root/.complete" ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "building the chroot needs root (mmdebstrap, chroot)"
  command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (make setup installs it)"
  mkdir -p "$cache"
  # One builder at a time; a second caller waits, then finds the result.
  exec 9>"$cache/nix-trixie.lock"
  flock 9
  [[ -f "$root/.complete" ]] && return 0
  local tmp="$root.tmp.$$" log="$cache/nix-trixie-$digest.log"
  rm -rf "$root" "$root".tmp.*
  if ! mmdebstrap --variant=apt --include="$packages" "$suite" "$tmp" "$mirror" >"$log" 2>&1; then
    rm -rf "$tmp"
    tail -n 30 "$log" >&2
    die "mmdebstrap failed (log: $log)"
  fi
  # Single-user Nix as root, no daemon, no build users: the same set-up as the
  # host's nix-bin. The store starts empty; nothing is substituted.
  mkdir -p "$tmp/nix/var/nix" "$tmp/etc/nix"
  cat >"$tmp/etc/nix/nix.conf" <<'CONF'
build-users-group =
sandbox = false
substituters =
experimental-features = nix-command flakes
CONF
  (cd / && in_root "$tmp" /usr/bin/nix --version) >/dev/null 2>>"$log" \
    || { rm -rf "$tmp"; die "nix does not run in the chroot (log: $log)"; }
  touch "$tmp/.complete"
  mv -T "$tmp" "$root"
  rm -f "$log"
}

require_built() {
  [[ -f "$root/.complete" ]] || die "the modern Nix chroot is not built: run tools/modern-nix.sh ensure"
}

# in_root ROOT CMD...: run CMD in the chroot ROOT, in the current directory, with
# /proc, /dev, /tmp and that directory bind-mounted in a private mount namespace.
in_root() {
  local root=$1 cwd=$PWD
  shift
  # Environment passed through: Nix settings and locale; everything else starts clean.
  local -a env=(PATH=/usr/local/bin:/usr/bin:/bin HOME=/root USER=root)
  local v
  for v in NIX_CONFIG NIX_PATH LC_ALL LANG TMPDIR TERM; do
    [[ -n ${!v+x} ]] && env+=("$v=${!v}")
  done
  # shellcheck disable=SC2016 # the inner scripts expand their own arguments
  unshare --mount --propagation private -- /bin/bash -c '
    set -e
    root=$1 cwd=$2; shift 2
    mount --rbind /proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /tmp "$root/tmp"
    case $cwd in
      /tmp|/tmp/*|/) ;;
      *) mkdir -p "$root$cwd"; mount --rbind "$cwd" "$root$cwd" ;;
    esac
    exec chroot "$root" /usr/bin/env -i "$@"
  ' modern-nix "$root" "$cwd" "${env[@]}" /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$cwd" "$@"
}

run_in_chroot() {
  require_built
  [[ $(id -u) -eq 0 ]] || die "running the chroot's Nix needs root"
  in_root "$root" "$@"
}

wrappers() {
  require_built
  local bin self
  self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
  # One wrapper folder per checkout (keyed by this script's path): checkouts that share the
  # cache never rewrite each other's wrappers, nor reuse one that points at a removed checkout.
  bin="$root.bin-$(printf '%s' "$self" | sha256sum | cut -c1-12)"
  if [[ ! -f "$bin/.complete" ]]; then
    local tmp="$bin.tmp.$$" name
    rm -rf "$tmp"
    mkdir -p "$tmp"
    for name in nix nix-build nix-store nix-instantiate nix-hash nix-env; do
      printf '#!/bin/sh\n# Runs the modern Nix (Debian %s chroot) via %s\nexec %q run %s "$@"\n' \
        "$suite" "$self" "$self" "$name" >"$tmp/$name"
      chmod 0755 "$tmp/$name"
    done
    touch "$tmp/.complete"
    rm -rf "$bin"
    mv -T "$tmp" "$bin"
  fi
  echo "$bin"
}

case "${1:-}" in
  ensure) ensure ;;
  path) require_built; echo "$root" ;;
  bin) wrappers ;;
  run) shift; [[ $# -gt 0 ]] || die "usage: tools/modern-nix.sh run CMD [ARG...]"; run_in_chroot "$@" ;;
  *) echo "usage: tools/modern-nix.sh {ensure|path|bin|run CMD...}" >&2; exit 2 ;;
esac
