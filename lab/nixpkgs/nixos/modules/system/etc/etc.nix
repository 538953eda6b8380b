# LAB (test infrastructure, not NixOS): the lab's declaration of NixOS's environment.etc
# (nixos/modules/system/etc/etc.nix): each entry becomes $toplevel/etc/TARGET (a copy of its
# source; the lab's activation links /etc entries to /etc/static as NixOS's setup-etc does).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types mkIf mkDefault;
  etcModule =
    { name, config, ... }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Whether this /etc file should be generated.";
        };
        target = mkOption {
          type = types.str;
          default = name;
          description = "Name of symlink (relative to /etc).";
        };
        text = mkOption {
          type = types.nullOr types.lines;
          default = null;
          description = "Text of the file.";
        };
        source = mkOption {
          type = types.path;
          description = "Path of the source file.";
        };
        mode = mkOption {
          type = types.str;
          default = "symlink";
          description = "If set to something else than `symlink`, the file is copied instead of symlinked, with the given file mode.";
        };
        user = mkOption {
          type = types.str;
          default = "+0";
          description = "User name of file owner.";
        };
        group = mkOption {
          type = types.str;
          default = "+0";
          description = "Group name of file owner.";
        };
      };
      config.source = mkIf (config.text != null) (
        mkDefault (pkgs.writeText "etc-${baseNameOf name}" config.text)
      );
    };
in
{
  options.environment.etc = mkOption {
    type = types.attrsOf (types.submodule etcModule);
    default = { };
    description = "Set of files that have to be linked in {file}`/etc`.";
  };
}
