# LAB (test infrastructure, not NixOS): NixOS's `assertions` and `warnings` options
# (nixos/modules/misc/assertions.nix); top-level.nix turns them into the build's
# "Failed assertions:" error and evaluation warnings, as NixOS does.
{ lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      internal = true;
      default = [ ];
      example = [
        {
          assertion = false;
          message = "you can't enable this for that reason";
        }
      ];
      description = "This option allows modules to express conditions that must hold for the evaluation of the system configuration to succeed, along with associated messages to be printed if they fail.";
    };
    warnings = mkOption {
      internal = true;
      default = [ ];
      type = types.listOf types.str;
      example = [ "The `foo' service is deprecated and will go away soon!" ];
      description = "This option allows modules to show warnings to users during the evaluation of the system configuration.";
    };
  };
}
