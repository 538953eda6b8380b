# TEST HARNESS entry point: evaluates NixOS modules for the evaluation tests.
#
#   import ./. { }                              lab/nixpkgs/lib/minilib.nix + nixos-stubs.nix + pkgs.nix
#   import ./. { lib = import <nixpkgs/lib>; }   nixpkgs' real lib.evalModules, same stubs
#   import ./. { nixpkgs = /path/to/nixpkgs; }  nixpkgs' nixos/lib/eval-config.nix (real
#                                               NixOS options and pkgs; no stubs)
{
  lib ? import ../../../../lab/nixpkgs/lib/minilib.nix,
  nixpkgs ? null,
  system ? "x86_64-linux",
}:
let
  nixModules = ../../../../nix-modules;
  stubPkgs = import ./pkgs.nix { inherit lib; };
  # The atBB flake as nix/module.nix sees it (`self`): only its package, a stand-in.
  atbbSelf.packages.${system}.default = stubPkgs.stdenv.mkDerivation {
    pname = "atbb";
    version = "0.1.0";
  };

  eval =
    modules:
    if nixpkgs == null then
      lib.evalModules {
        modules = [ ./nixos-stubs.nix ] ++ modules;
        specialArgs.pkgs = stubPkgs;
      }
    else
      import (nixpkgs + "/nixos/lib/eval-config.nix") {
        inherit system;
        modules = modules ++ [
          {
            boot.isContainer = true;
            system.stateVersion = "25.05";
          }
        ];
      };
in
{
  inherit eval nixModules lib;
  pkgs = stubPkgs;
  atbbModule = import (nixModules + "/atbb/nix/module.nix") atbbSelf;
  # Messages of the assertions that do not hold (NixOS turns them into a build error).
  failedAssertions = config: map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
}
