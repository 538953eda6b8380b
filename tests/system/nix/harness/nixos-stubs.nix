# TEST HARNESS, not NixOS: stand-in declarations of the NixOS options that the
# aiolabs modules set, with NixOS's option names, types and defaults where the
# modules depend on them. Full nixpkgs/nixos cannot be had on the machines the
# tests run on; with only `lib`, these declarations give the module system
# something to type-check the modules' definitions against. Uses only `lib`
# functions that both nixpkgs' lib and ./minilib.nix provide.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;

  opt =
    type: default:
    mkOption {
      inherit type default;
      description = "stand-in";
    };
  req =
    type:
    mkOption {
      inherit type;
      description = "stand-in (required)";
    };
  strs = opt (types.listOf types.str) [ ];

  # systemd's unit file values, as in nixos/lib/systemd-unit-options.nix.
  unitScalar = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
    types.package
  ];
  unitOption = types.either unitScalar (types.listOf unitScalar);

  serviceModule = {
    options = {
      enable = opt types.bool true;
      description = opt types.str "";
      after = strs;
      before = strs;
      requires = strs;
      wants = strs;
      bindsTo = strs;
      partOf = strs;
      wantedBy = strs;
      requiredBy = strs;
      environment = opt (types.attrsOf (types.nullOr (types.oneOf [
        types.str
        types.path
        types.package
      ]))) { };
      path = opt (types.listOf (types.either types.package types.str)) [ ];
      serviceConfig = opt (types.attrsOf unitOption) { };
      unitConfig = opt (types.attrsOf unitOption) { };
      preStart = opt types.lines "";
      script = opt types.lines "";
      postStart = opt types.lines "";
      restartTriggers = opt (types.listOf types.unspecified) [ ];
      startAt = opt (types.either types.str (types.listOf types.str)) [ ];
    };
  };

  locationModule = {
    options = {
      proxyPass = opt (types.nullOr types.str) null;
      proxyWebsockets = opt types.bool false;
      root = opt (types.nullOr types.path) null;
      alias = opt (types.nullOr types.path) null;
      index = opt (types.nullOr types.str) null;
      tryFiles = opt (types.nullOr types.str) null;
      return = opt (types.nullOr (types.either types.str types.int)) null;
      extraConfig = opt types.lines "";
      priority = opt types.int 1000;
      # NixOS: defaults to the server-wide services.nginx.recommendedProxySettings.
      recommendedProxySettings = opt types.bool config.services.nginx.recommendedProxySettings;
    };
  };

  vhostModule = {
    options = {
      serverName = opt (types.nullOr types.str) null;
      serverAliases = strs;
      forceSSL = opt types.bool false;
      addSSL = opt types.bool false;
      enableACME = opt types.bool false;
      useACMEHost = opt (types.nullOr types.str) null;
      root = opt (types.nullOr types.path) null;
      extraConfig = opt types.lines "";
      locations = opt (types.attrsOf (types.submodule locationModule)) { };
    };
  };

  userModule =
    { name, ... }:
    {
      options = {
        name = opt types.str name;
        isSystemUser = opt types.bool false;
        isNormalUser = opt types.bool false;
        group = opt types.str "";
        description = opt types.str "";
        home = opt types.path "/var/empty";
        createHome = opt types.bool false;
        extraGroups = strs;
        openssh.authorizedKeys.keys = strs;
      };
    };

  wireguardPeer = {
    options = {
      publicKey = req types.str;
      allowedIPs = strs;
      endpoint = opt (types.nullOr types.str) null;
      persistentKeepalive = opt (types.nullOr types.int) null;
    };
  };
in
{
  options = {
    assertions = opt (types.listOf types.unspecified) [ ];
    warnings = strs;

    system.stateVersion = req types.str;
    time.timeZone = opt (types.nullOr types.str) null;
    i18n.defaultLocale = opt types.str "en_US.UTF-8";
    environment.systemPackages = opt (types.listOf types.package) [ ];

    boot.loader = {
      grub.enable = opt types.bool true;
      grub.device = opt types.str "";
      grub.devices = strs;
      systemd-boot.enable = opt types.bool false;
      efi.canTouchEfiVariables = opt types.bool false;
    };
    boot.initrd.availableKernelModules = strs;
    boot.kernelModules = strs;
    fileSystems = opt (types.attrsOf types.anything) { };
    swapDevices = opt (types.listOf types.anything) [ ];

    networking = {
      hostName = opt types.str "nixos";
      domain = opt (types.nullOr types.str) null;
      firewall.enable = opt types.bool true;
      firewall.allowedTCPPorts = opt (types.listOf types.port) [ ];
      firewall.allowedUDPPorts = opt (types.listOf types.port) [ ];
      wireguard.interfaces = opt (types.attrsOf (types.submodule {
        options = {
          ips = strs;
          listenPort = opt (types.nullOr types.port) null;
          privateKeyFile = opt (types.nullOr types.str) null;
          peers = opt (types.listOf (types.submodule wireguardPeer)) [ ];
        };
      })) { };
    };

    users.users = opt (types.attrsOf (types.submodule userModule)) { };
    users.groups = opt (types.attrsOf (types.submodule {
      options.members = strs;
    })) { };

    systemd.services = opt (types.attrsOf (types.submodule serviceModule)) { };
    systemd.tmpfiles.rules = strs;

    security.acme = {
      acceptTerms = opt types.bool false;
      defaults.email = opt (types.nullOr types.str) null;
    };

    services.openssh = {
      enable = opt types.bool false;
      settings = opt types.anything { };
    };

    services.fail2ban = {
      enable = opt types.bool false;
      maxretry = opt types.int 3;
      bantime = opt (types.nullOr types.str) null;
      jails = opt (types.attrsOf types.anything) { };
    };

    services.nginx = {
      enable = opt types.bool false;
      recommendedProxySettings = opt types.bool false;
      recommendedTlsSettings = opt types.bool false;
      recommendedOptimisation = opt types.bool false;
      recommendedGzipSettings = opt types.bool false;
      clientMaxBodySize = opt types.str "10m";
      virtualHosts = opt (types.attrsOf (types.submodule vhostModule)) { };
    };

    services.postgresql = {
      enable = opt types.bool false;
      package = opt types.package pkgs.postgresql_16;
      ensureDatabases = strs;
      ensureUsers = opt (types.listOf (types.submodule {
        options = {
          name = req types.str;
          ensureDBOwnership = opt types.bool false;
          ensureClauses = opt types.anything { };
        };
      })) [ ];
    };

    services.pict-rs = {
      enable = opt types.bool false;
      package = opt types.package pkgs.pict-rs;
      dataDir = opt types.path "/var/lib/pict-rs";
      address = opt types.str "127.0.0.1";
      port = opt types.port 8080;
    };
  };
}
