# LAB (test infrastructure, not NixOS): time.*, i18n.*, console.* (nixos/modules/config/
# locale.nix, i18n.nix, console.nix): declared so configurations type-check; recorded only.
{ lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  options = {
    time.timeZone = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "America/New_York";
      description = "The time zone used when displaying times and dates.";
    };
    time.hardwareClockInLocalTime = mkOption {
      type = types.bool;
      default = false;
      description = "If set, keep the hardware clock in local time instead of UTC.";
    };
    i18n.defaultLocale = mkOption {
      type = types.str;
      default = "en_US.UTF-8";
      description = "The default locale.";
    };
    i18n.extraLocaleSettings = mkOption {
      type = types.attrsOf types.str;
      default = { };
      description = "A set of additional system-wide locale settings other than LANG.";
    };
    i18n.supportedLocales = mkOption {
      type = types.listOf types.str;
      default = [ "all" ];
      description = "List of locales that the system should support.";
    };
    console.keyMap = mkOption {
      type = types.either types.str types.path;
      default = "us";
      description = "The keyboard mapping table for the virtual consoles.";
    };
    console.font = mkOption {
      type = types.nullOr (types.either types.str types.path);
      default = null;
      description = "The font used for the virtual consoles.";
    };
  };
}
