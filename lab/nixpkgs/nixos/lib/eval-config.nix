# LAB (test infrastructure, not NixOS): nixos/lib/eval-config.nix of the lab's nixpkgs: evaluates a
# NixOS configuration with lib.evalModules (nixpkgs' real lib or minilib, see ../../lib) over the
# lab's option modules (../modules/module-list.nix). Same arguments as nixpkgs' eval-config.nix.
{
  system ? builtins.currentSystem or null,
  pkgs ? null,
  baseModules ? import ../modules/module-list.nix,
  extraArgs ? { },
  specialArgs ? { },
  modules,
  modulesLocation ? null,
  check ? true,
  prefix ? [ ],
  lib ? import ../../lib,
  extraModules ? [ ],
}:
let
  pkgsModule = {
    _file = ./eval-config.nix;
    key = toString ./eval-config.nix;
    config = lib.mkMerge (
      lib.optional (system != null) { nixpkgs.system = lib.mkDefault system; }
      ++ lib.optional (pkgs != null) { _module.args.pkgs = lib.mkForce pkgs; }
      ++ lib.optional (extraArgs != { }) { _module.args = extraArgs; }
    );
  };
  result = lib.evalModules {
    modules = baseModules ++ extraModules ++ [ pkgsModule ] ++ modules;
    specialArgs = {
      modulesPath = toString ../modules;
    }
    // specialArgs;
  };
in
result
// {
  inherit lib;
  pkgs = result._module.args.pkgs;
}
