# LAB (test infrastructure, not NixOS): NixOS's nixpkgs.* options (nixos/modules/misc/nixpkgs.nix),
# giving the modules their `pkgs`: the lab's package set (../../../pkgs), not nixpkgs.
# nixpkgs.config and nixpkgs.overlays are accepted and not applied (documented in README.md).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.nixpkgs;
  platformSystem = p: if builtins.isString p then p else p.system;
in
{
  options.nixpkgs = {
    hostPlatform = mkOption {
      # NixOS: no default (lab: null stands for "not set").
      type = types.nullOr (types.either types.str types.attrs);
      default = null;
      example = "x86_64-linux";
      description = "Specifies the platform where the NixOS configuration will run.";
    };
    buildPlatform = mkOption {
      type = types.nullOr (types.either types.str types.attrs);
      default = null;
      description = "Specifies the platform on which NixOS should be built.";
    };
    system = mkOption {
      type = types.str;
      default =
        if cfg.hostPlatform != null then
          platformSystem cfg.hostPlatform
        else if builtins ? currentSystem then
          builtins.currentSystem
        else
          throw "Neither nixpkgs.hostPlatform nor the legacy option nixpkgs.system has been set.";
      description = "Specifies the Nix platform type on which NixOS should be built (legacy; prefer nixpkgs.hostPlatform).";
    };
    config = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      example = {
        allowBroken = true;
        allowUnfree = true;
      };
      description = "Global configuration for Nixpkgs (lab: accepted, not applied).";
    };
    overlays = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
      description = "List of overlays to apply to Nixpkgs (lab: accepted, not applied).";
    };
    pkgs = mkOption {
      type = types.unspecified;
      default = import ../../../pkgs {
        inherit lib;
        system = cfg.system;
      };
      description = "The package set the NixOS modules receive as `pkgs`.";
    };
  };

  config._module.args.pkgs = cfg.pkgs;
}
