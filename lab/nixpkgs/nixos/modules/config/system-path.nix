# LAB (test infrastructure, not NixOS): environment.systemPackages / defaultPackages
# (nixos/modules/config/system-path.nix) and the system path, $toplevel/sw: links to every bin/*
# of systemPackages ++ defaultPackages ++ the lab's required packages (systemd's tools,
# nixos-rebuild, nixos-version; NixOS's requiredPackages are mostly Debian's /usr/bin on a lab host).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.environment;
in
{
  options.environment = {
    systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      example = lib.literalExpression "[ pkgs.firefox pkgs.thunderbird ]";
      description = "The set of packages that appear in /run/current-system/sw.";
    };
    defaultPackages = mkOption {
      type = types.listOf types.package;
      default = [
        pkgs.perl
        pkgs.rsync
        pkgs.strace
      ];
      description = ''
        Set of default packages that aren't strictly necessary for a running system,
        entries can be removed for a more minimal NixOS installation (profiles/minimal.nix).
      '';
    };
    pathsToLink = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Lists directories to be symlinked in {file}`/run/current-system/sw` (lab: /bin only).";
    };
    extraOutputsToInstall = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Entries listed here will be appended to the meta.outputsToInstall attribute for each package (lab: unused).";
    };
    variables = mkOption {
      type = types.attrsOf (types.either types.str (types.listOf types.str));
      default = { };
      description = "A set of environment variables used in the global environment.";
    };
    sessionVariables = mkOption {
      type = types.attrsOf (types.either types.str (types.listOf types.str));
      default = { };
      description = "A set of environment variables used in the global environment (set by PAM).";
    };
    shellAliases = mkOption {
      type = types.attrsOf (types.nullOr types.str);
      default = { };
      description = "An attribute set that maps aliases to command lines.";
    };
  };

  options.system.path = mkOption {
    internal = true;
    description = "The packages you want in the boot environment.";
  };

  config.system.path = pkgs.buildEnv {
    name = "system-path";
    paths = cfg.systemPackages ++ cfg.defaultPackages ++ config.system.lab.requiredPackages;
    pathsToLink = [ "/bin" ];
    ignoreCollisions = true;
  };
}
