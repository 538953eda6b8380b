# LAB (test infrastructure, not NixOS): documentation.* (nixos/modules/misc/documentation.nix); no effect.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  bool =
    default: description:
    mkOption {
      type = types.bool;
      inherit default description;
    };
  cfg = config.documentation;
in
{
  options.documentation = {
    enable = bool true "Whether to install documentation of packages from environment.systemPackages into the generated system path.";
    man.enable = bool cfg.enable "Whether to install manual pages.";
    doc.enable = bool cfg.enable "Whether to install documentation distributed in packages' /share/doc.";
    info.enable = bool cfg.enable "Whether to install info pages and the info command.";
    nixos.enable = bool cfg.enable "Whether to install NixOS's own documentation.";
  };
}
