# LAB (test infrastructure, not nixpkgs): `<nixpkgs/lib>` of the lab's stand-in nixpkgs tree.
#
# nixpkgs' real lib wherever it can be had, else the project's own small evaluator:
#   1. NIXPKGS_LIB in the environment: nixpkgs' lib/ itself, or a tree containing lib/ (a
#      checkout of nix-community/nixpkgs.lib, or a whole nixpkgs);
#   2. /opt/lab/nixpkgs-lib on a lab host (labctl bind-mounts $NIXPKGS_LIB there), same shapes;
#   3. ./minilib.nix (held to the real lib by tests/system/nix/test_minilib_conformance.py).
# In pure evaluation (flakes) the environment and /opt cannot be read: minilib.
let
  pure = !(builtins ? currentSystem);
  # A directory given as NIXPKGS_LIB may be lib/ itself or a tree that has lib/.
  libDir = dir: if builtins.pathExists (dir + "/lib/default.nix") then dir + "/lib" else dir;
  usable = dir: builtins.pathExists (libDir dir + "/default.nix");
  fromEnv = if pure then "" else builtins.getEnv "NIXPKGS_LIB";
  onHost = "/opt/lab/nixpkgs-lib";
in
if fromEnv != "" then
  (
    if usable fromEnv then
      import (libDir fromEnv)
    else
      throw "NIXPKGS_LIB=${fromEnv} holds neither default.nix nor lib/default.nix (point it at nixpkgs' lib/ or a tree that contains it)"
  )
else if !pure && usable onHost then
  import (libDir onHost)
else
  import ./minilib.nix
