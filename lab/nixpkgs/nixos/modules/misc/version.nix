# LAB (test infrastructure, not NixOS): system.stateVersion and system.nixos.* (nixos/modules/misc/version.nix).
# NixOS only warns when system.stateVersion is unset; the lab makes it an error (top-level.nix),
# as the collection's own validation does, so a configuration without one never deploys.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.system.nixos;
in
{
  options.system = {
    stateVersion = mkOption {
      type = types.str;
      example = "25.05";
      description = ''
        The NixOS release with which your system is compatible (stateful data such as
        database formats). Set it once, at installation, and do not change it.
      '';
    };
    nixos = {
      release = mkOption {
        readOnly = true;
        type = types.str;
        default = "25.11";
        description = "The NixOS release (e.g. `25.11`).";
      };
      version = mkOption {
        internal = true;
        type = types.str;
        default = "${cfg.release}.19700101.lab";
        description = "The full NixOS version (lab: release.19700101.lab).";
      };
      codeName = mkOption {
        readOnly = true;
        type = types.str;
        default = "Xantusia";
        description = "The NixOS release code name.";
      };
      label = mkOption {
        type = types.str;
        default = cfg.version;
        description = "NixOS version name to be used in the names of generated outputs and boot labels.";
      };
      tags = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Strings to prefix to the default system.nixos.label.";
      };
    };
    configurationRevision = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "The Git revision of the top-level flake from which this configuration was built.";
    };
    name = mkOption {
      type = types.str;
      default = if config.networking.hostName == "" then "unnamed" else config.networking.hostName;
      description = "The name of the system used in the toplevel derivation's name.";
    };
  };
}
