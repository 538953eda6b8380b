#!/usr/bin/env bash
# Make the controller's Nix work in a person's own shell, the way tools/*.sh run it (their
# NIX_CONFIG): Debian's nix-bin runs as root with no daemon and, on machines like this one,
# with no `nixbld` group, no reachable binary cache and a sandbox without /bin/sh. Nix then
# fails with "the group 'nixbld' specified in 'build-users-group' does not exist" and first
# retries cache.nixos.org on every call. So, only when the machine has no nixbld group, add to
# the Nix configuration file (default /etc/nix/nix.conf; $AIOLABS_NIX_CONF, or the first
# argument, names another; AIOLABS_NIX_CONF=skip leaves it alone) each of these settings that
# it does not set yet:
#   build-users-group =            (build as root: there are no build users)
#   sandbox = false                (Debian's default sandbox has no /bin/sh)
#   substituters =                 (no binary cache is reachable: do not wait for one)
#   experimental-features = nix-command flakes   (the atBB role's nix build, flake inputs)
# A setting the file already has is kept as it is (and named). Idempotent; says what it did.
set -euo pipefail

conf=${1:-${AIOLABS_NIX_CONF:-/etc/nix/nix.conf}}
say() { printf '==> %s\n' "$*"; }

if [[ $conf == skip ]]; then
  say "controller Nix: AIOLABS_NIX_CONF=skip, nix.conf left alone"
  exit 0
fi
if getent group nixbld >/dev/null 2>&1 && [[ -z ${AIOLABS_NIX_ASSUME_NO_NIXBLD:-} ]]; then
  say "controller Nix: the nixbld group exists (a multi-user Nix), $conf left alone"
  exit 0
fi

settings=(
  "build-users-group ="
  "sandbox = false"
  "substituters ="
  "experimental-features = nix-command flakes"
)
mkdir -p "$(dirname "$conf")"
[[ -e $conf ]] || : >"$conf"
added=()
kept=()
for line in "${settings[@]}"; do
  key=${line%% =*}
  # The key as Nix reads it: at the start of a line, then spaces and '='.
  if grep -Eq "^[[:space:]]*${key}[[:space:]]*=" "$conf"; then
    kept+=("$(grep -E "^[[:space:]]*${key}[[:space:]]*=" "$conf" | tail -1 | sed 's/^[[:space:]]*//')")
  else
    added+=("$line")
  fi
done
join() { local IFS=';'; local s="$*"; echo "${s//;/; }"; }
if ((${#added[@]})); then
  # A file that does not end in a newline must not glue our first line to its last.
  sep=""
  if [[ -s $conf && -n $(tail -c1 "$conf") ]]; then sep=$'\n'; fi
  block=$(printf '%s# Added by aiolabs.nixos tools/setup.sh: root-only Nix without nixbld users or a binary cache\n' "$sep"
          printf '%s\n' "${added[@]}")
  printf '%s\n' "$block" >>"$conf"
  say "controller Nix: added to $conf: $(join "${added[@]}")"
fi
if ((${#kept[@]})); then
  say "controller Nix: kept what $conf already sets: $(join "${kept[@]}")"
fi
if ((${#added[@]} == 0 && ${#kept[@]} == 0)); then
  say "controller Nix: nothing to do"
fi
