# LAB (test infrastructure, not NixOS): the nix.* options of NixOS (nixos/modules/config/nix.nix,
# nix-channel.nix, nix-daemon.nix) and /etc/nix/nix.conf in NixOS's format.
# The lab's defaults differ from NixOS only where a lab host needs it (no nixbld users, no
# sandbox, no binary cache: no network): build-users-group = "", sandbox = false,
# substituters = [ ]. experimental-features is empty unless the configuration sets it.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkOption
    mkDefault
    mkIf
    types
    concatStringsSep
    ;
  inherit (builtins) attrNames filter isBool isInt isList isPath isString;
  cfg = config.nix;

  hasExtraPrefix = k: builtins.substring 0 6 k == "extra-";
  confAtom = types.nullOr (
    types.oneOf [
      types.bool
      types.int
      types.str
      types.path
      types.package
    ]
  );
  semanticConfType = types.attrsOf (types.either confAtom (types.listOf confAtom));

  mkValueString =
    v:
    if v == null then
      ""
    else if isInt v then
      toString v
    else if isBool v then
      (if v then "true" else "false")
    else if isList v then
      toString v
    else if isPath v then
      toString v
    else if isString v then
      v
    else
      toString v;
  mkKeyValuePairs =
    attrs:
    concatStringsSep "\n" (map (k: "${builtins.replaceStrings [ "=" ] [ "\\=" ] k} = ${mkValueString attrs.${k}}") (attrNames attrs));
  pick = pred: lib.filterAttrs (k: _: pred k) cfg.settings;

  opt =
    type: default: description:
    mkOption { inherit type default description; };
in
{
  options.nix = {
    enable = opt types.bool true "Whether to enable Nix (lab: the host's Debian nix-bin).";
    package = opt types.package pkgs.nix "The Nix package (lab: links to the host's Nix).";
    channel.enable = opt types.bool true "Whether the nix-channel command and state files are made available on the machine.";
    nixPath = mkOption {
      type = types.listOf types.str;
      default =
        if cfg.channel.enable then
          [
            "nixpkgs=/nix/var/nix/profiles/per-user/root/channels/nixos"
            "nixos-config=/etc/nixos/configuration.nix"
            "/nix/var/nix/profiles/per-user/root/channels"
          ]
        else
          [ ];
      description = "The default Nix expression search path, used by the Nix evaluator to look up paths enclosed in angle brackets.";
    };
    extraOptions = opt types.lines "" "Additional text appended to {file}`nix.conf`.";
    checkConfig = opt types.bool true "If enabled, checks that Nix can parse the generated nix.conf (lab: not checked).";
    checkAllErrors = opt types.bool true "If enabled, checks the nix.conf parsing for any kind of error.";
    gc = {
      automatic = opt types.bool false "Automatically run the garbage collector at a specific time.";
      dates = opt (types.either types.str (types.listOf types.str)) [ "03:15" ] "When to run the garbage collector.";
      options = opt types.str "" "Options given to nix-collect-garbage when the garbage collector is run automatically.";
      persistent = opt types.bool true "Whether missed runs are caught up after a boot.";
    };
    optimise.automatic = opt types.bool false "Automatically run the nix store optimiser at a specific time.";
    settings = mkOption {
      type = types.submodule {
        freeformType = semanticConfType;
        options = {
          max-jobs = opt (types.either types.int (types.enum [ "auto" ])) "auto" "Maximum number of build jobs.";
          auto-optimise-store = opt types.bool false "Hard-link identical files in the store.";
          cores = opt types.int 0 "Maximum number of concurrent tasks during one build.";
          sandbox = opt (types.either types.bool (types.enum [ "relaxed" ])) false "Whether builds are sandboxed (lab default: false; NixOS: true).";
          extra-sandbox-paths = opt (types.listOf types.str) [ ] "Directories from the host filesystem to be included in the sandbox.";
          substituters = opt (types.listOf types.str) [ ] "Binary caches (lab default: none; NixOS adds https://cache.nixos.org/).";
          trusted-substituters = opt (types.listOf types.str) [ ] "Binary caches that non-root users can use.";
          require-sigs = opt types.bool true "Whether substituted paths must be signed.";
          trusted-public-keys = mkOption {
            type = types.listOf types.str;
            description = "List of public keys used to sign binary caches.";
          };
          trusted-users = mkOption {
            type = types.listOf types.str;
            description = "Users that have additional rights when connecting to the Nix daemon.";
          };
          system-features = mkOption {
            type = types.listOf types.str;
            description = "The set of features supported by the machine.";
          };
          allowed-users = opt (types.listOf types.str) [ "*" ] "Users allowed to connect to the Nix daemon.";
          build-users-group = opt types.str "" "The group of the build users (lab default: none; NixOS: nixbld).";
        };
      };
      default = { };
      description = "Configuration for Nix (nix.conf(5)), translated directly to its key-value pairs.";
    };
  };

  config = mkIf cfg.enable {
    nix.settings = {
      trusted-public-keys = [ "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
      trusted-users = [ "root" ];
      system-features = mkDefault [
        "nixos-test"
        "benchmark"
        "big-parallel"
        "kvm"
      ];
    };
    # nix.nix's format: extra-* settings after the others, then extraOptions.
    environment.etc."nix/nix.conf".text = ''
      # WARNING: this file is generated from the nix.* options in
      # your NixOS configuration, typically
      # /etc/nixos/configuration.nix.  Do not edit it!
      ${mkKeyValuePairs (pick (k: !hasExtraPrefix k))}
      ${mkKeyValuePairs (pick hasExtraPrefix)}
      ${cfg.extraOptions}
    '';
    environment.systemPackages = [ cfg.package ];
  };
}
