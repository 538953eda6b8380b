#!/usr/bin/env bash
# Capture the Nix output the parsers in plugins/module_utils/_nix*.py read, from
# the Nix on PATH, into nix_samples/nix-<version>/. Run it with Debian's nix-bin,
# and with PATH="$(tools/modern-nix.sh bin):$PATH" for the modern Nix.
# Store paths differ between runs (the derivations carry a random tag so that
# nothing is already valid); the tests read paths out of the samples rather
# than hard-coding them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(nix --version | awk '{print $NF}')
out="$here/nix-$version"
work=$(mktemp -d /tmp/nix-capture.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
cd "$work"
export LC_ALL=C
export NIX_CONFIG=$'substituters =\nexperimental-features = nix-command flakes\nbuild-users-group =\nsandbox = false'
tag=t$RANDOM$RANDOM

cat >fod.nix <<'NIX'
{ hash ? "", content ? "hello" }:
builtins.derivation {
  name = "demo-deps";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "PATH=/usr/bin:/bin; mkdir -p $out; printf '%s' \"$content\" > $out/data" ];
  inherit content;
  outputHash = hash;
  outputHashAlgo = "sha256";
  outputHashMode = "recursive";
}
NIX
cat >multi.nix <<'NIX'
{ tag ? "a", fail ? false }:
let
  mk = name: script: builtins.derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
    PATH = "/usr/bin:/bin";
  };
  dep = mk "dep-${tag}" (if fail then "echo compiling dep; echo 'fatal: broken input' >&2; exit 3" else "echo dep > $out");
in {
  inherit dep;
  app = builtins.derivation {
    name = "app-${tag}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    outputs = [ "out" "doc" ];
    args = [ "-c" "echo ${dep} > $out; echo doc > $doc" ];
    PATH = "/usr/bin:/bin";
  };
}
NIX

cap() { # cap NAME CMD...: stdout, stderr and exit status of CMD
  local name=$1; shift
  set +e
  "$@" >"$out/$name.stdout" 2>"$out/$name.stderr"
  echo $? >"$out/$name.rc"
  set -e
}

# Hash mismatch in a fixed-output derivation: empty hash, fake hash, both CLIs.
cap fod-empty-nix-build nix-build fod.nix --no-out-link --argstr content "e$tag"
cap fod-fake-nix-build nix-build fod.nix --no-out-link --argstr content "f$tag" \
  --argstr hash sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
cap fod-empty-nix nix build -f fod.nix --no-link --argstr content "n$tag"
# The real hash of that content, to check the SRI conversion against.
printf 'n%s' "$tag" >"$work/data"
mkdir -p "$work/tree" && printf 'n%s' "$tag" >"$work/tree/data"
nix-hash --type sha256 --base32 "$work/tree" >"$out/fod-empty-nix.nix-hash-base32"
nix-hash --type sha256 "$work/tree" >"$out/fod-empty-nix.nix-hash-hex"

# Dry runs of something not built: both CLIs; then the build; then a dry run
# again (nothing to do).
cap dry-run-unbuilt-nix nix build -f multi.nix app --argstr tag "$tag" --dry-run --json
cap dry-run-unbuilt-nix-build nix-build multi.nix -A app --argstr tag "$tag" --dry-run
cap build-json-nix nix build -f multi.nix app --argstr tag "$tag" --json --no-link
cap build-nix-build nix-build multi.nix -A app --argstr tag "$tag" --no-out-link
cap dry-run-built-nix nix build -f multi.nix app --argstr tag "$tag" --dry-run --json

# Paths that would be fetched: put a built path into a local binary cache,
# delete it from the store, dry-run with that cache as substituter.
cap build-fetchable nix-build multi.nix -A dep --argstr tag "s$tag" --no-out-link
dep=$(cat "$out/build-fetchable.stdout")
nix copy --to "file://$work/cache" "$dep" 2>/dev/null
nix-store --delete "$dep" >/dev/null 2>&1
cap dry-run-fetch-nix nix build -f multi.nix app --argstr tag "s$tag" --dry-run --json \
  --option substituters "file://$work/cache" --option require-sigs false
cap dry-run-fetch-nix-build nix-build multi.nix -A app --argstr tag "s$tag" --dry-run \
  --option substituters "file://$work/cache" --option require-sigs false

# A failing build: the failing derivation is a dependency of the one asked for.
cap build-fail-nix nix build -f multi.nix app --argstr tag "x$tag" --arg fail true --json --no-link
cap build-fail-nix-build nix-build multi.nix -A app --argstr tag "y$tag" --arg fail true --no-out-link

# Validity of out paths.
built=$(cat "$out/build-nix-build.stdout")
cap check-validity nix-store --check-validity --print-invalid "$built" "${built%-*}-gone${tag}"

nix --version >"$out/VERSION"
echo "$out"
