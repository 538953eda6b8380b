# TEST HARNESS entry point: evaluates NixOS modules for the evaluation tests.
#
#   import ./. { }                              lab/nixpkgs/lib/minilib.nix + the lab's NixOS
#                                               option modules + pkgs.nix
#   import ./. { lib = import <nixpkgs/lib>; }   nixpkgs' real lib.evalModules, same declarations
#   import ./. { nixpkgs = /path/to/nixpkgs; }  nixpkgs' nixos/lib/eval-config.nix (real NixOS
#                                               options and pkgs)
# The declarations are the lab's (lab/nixpkgs/nixos/modules, the same set a lab host evaluates),
# so the tests and the lab agree on which options exist and their types.
{
  lib ? import ../../../../lab/nixpkgs/lib/minilib.nix,
  nixpkgs ? null,
  system ? "x86_64-linux",
}:
let
  nixModules = ../../../../nix-modules;
  labNixpkgs = ../../../../lab/nixpkgs;
  # pkgs.nix's recording stand-ins over the lab's packages (which the lab modules' defaults use).
  stubPkgs = import (labNixpkgs + "/pkgs") { inherit lib system; } // import ./pkgs.nix { inherit lib; };
  # The atBB flake as nix/module.nix sees it (`self`): only its package, a stand-in.
  atbbSelf.packages.${system}.default = stubPkgs.stdenv.mkDerivation {
    pname = "atbb";
    version = "0.1.0";
  };

  eval =
    modules:
    if nixpkgs == null then
      lib.evalModules {
        modules =
          import (labNixpkgs + "/nixos/modules/module-list.nix")
          ++ [
            {
              # As the nixos level below: a container (no boot loader or root file system needed).
              boot.isContainer = lib.mkDefault true;
              system.stateVersion = lib.mkDefault "25.05";
            }
          ]
          ++ modules;
        specialArgs = {
          pkgs = stubPkgs;
          modulesPath = toString (labNixpkgs + "/nixos/modules");
        };
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
