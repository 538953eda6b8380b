# LNbits from its own flake (uv2nix), deployed as source to /var/src/lnbits-src
# and loaded with `builtins.getFlake "path:…"` (its flake.lock pins the inputs).
# Nix copies that tree into the store when the system is evaluated: the package is
# built from the copy and the unit runs it (LNBITS_PATH), so a rollback runs the
# previous source and a push in progress never changes what runs. State lives in
# /var/lib/lnbits. Extensions pushed to /var/src/lnbits-extensions are copied into
# the store the same way; that copy either replaces the extensions folder (a
# symlink) or is merged beside the extensions installed from the LNbits UI.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    getExe
    hasPrefix
    literalExpression
    mkDefault
    mkEnableOption
    mkIf
    mkOption
    optional
    types
    ;

  cfg = config.aiolabs.lnbits;
  extensionsDir = "${cfg.stateDir}/extensions";
  ext = cfg.extensions;
  flake = builtins.getFlake "path:${cfg.source}";
  # The deployed extensions as part of the system (null: none deployed, the folder is left alone).
  # Read at evaluation time; a folder that is not there means the deploy pushed none.
  deployedExtensions =
    if ext.source == null || !(hasPrefix "/" ext.source) || !(builtins.pathExists ext.source) then
      null
    else
      builtins.path {
        path = /. + ext.source;
        name = "lnbits-extensions";
      };
in
{
  imports = [
    ./common.nix
    ./health.nix
  ];

  options.aiolabs.lnbits = {
    enable = mkEnableOption "LNbits at lnbits.<domain>";

    source = mkOption {
      type = types.str;
      default = "/var/src/lnbits-src";
      description = ''
        The LNbits source tree with its flake.nix, uv.lock and flake.lock, as
        pushed by the deploy (a path on the machine). Read when the system is
        evaluated with `builtins.getFlake "path:<source>"`, which copies it into the
        store: {option}`aiolabs.lnbits.package` is built from that copy and the unit
        runs it ({option}`aiolabs.lnbits.sourceStorePath`), never this mutable tree.
      '';
    };

    sourceStorePath = mkOption {
      type = types.str;
      default = flake.outPath;
      defaultText = literalExpression ''(builtins.getFlake "path:''${config.aiolabs.lnbits.source}").outPath'';
      description = ''
        The store copy of the LNbits source the unit runs with (`LNBITS_PATH`): the
        flake's own store path, the tree the default package is built from. Set it
        together with {option}`aiolabs.lnbits.package` when the package comes from
        elsewhere (upstream's module uses the package's `src`).
      '';
    };

    package = mkOption {
      type = types.package;
      default = (builtins.getFlake "path:${cfg.source}").packages.${pkgs.stdenv.hostPlatform.system}.default;
      defaultText = literalExpression ''(builtins.getFlake "path:''${config.aiolabs.lnbits.source}").packages.''${system}.default'';
      description = "The LNbits package (a uv2nix virtual environment with the `lnbits` program).";
    };

    domain = mkOption {
      type = types.str;
      default = "lnbits.${config.aiolabs.domain}";
      defaultText = literalExpression ''"lnbits.''${config.aiolabs.domain}"'';
      description = "Virtual host name of LNbits.";
    };

    port = mkOption {
      type = types.port;
      default = 5000;
      description = "Loopback port LNbits listens on (behind nginx).";
    };

    stateDir = mkOption {
      type = types.str;
      default = "/var/lib/lnbits";
      description = "LNbits' data folder (`LNBITS_DATA_FOLDER`), with the database and extensions.";
    };

    env = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        LNBITS_ADMIN_UI = "true";
      };
      description = "Further LNbits settings as environment variables (no secrets: they land in the store).";
    };

    extensions = {
      source = mkOption {
        type = types.nullOr types.str;
        default = "/var/src/lnbits-extensions";
        description = ''
          Where the deploy pushes extensions (a path on the machine); null leaves the
          extensions folder alone. Read when the system is evaluated and copied into the
          store, so the deployed extensions are part of the system and roll back with it.
          A folder that does not exist then counts as none deployed (as null).
        '';
      };

      mode = mkOption {
        type = types.enum [
          "symlink"
          "merge"
        ];
        default = "symlink";
        description = ''
          How deployed extensions reach `<stateDir>/extensions`:
          `symlink` replaces the folder by a symlink to the store copy of
          {option}`aiolabs.lnbits.extensions.source` (read-only: extensions installed from
          the LNbits UI are deleted and cannot be installed; a rollback links the previous set);
          `merge` copies the store copy into the folder before each start, beside the
          UI-installed ones, which live in {option}`aiolabs.lnbits.stateDir` and keep working
          (a deployed extension wins over a UI one of the same name; a new store copy changes
          the unit, so the switch, and a rollback, restart LNbits with the copy of that system).
        '';
      };
    };

    enableACME = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to get a Let's Encrypt certificate and force HTTPS.";
    };

    user = mkOption {
      type = types.str;
      default = "lnbits";
      description = "User LNbits runs as; created when left at the default.";
    };

    group = mkOption {
      type = types.str;
      default = "lnbits";
      description = "Group LNbits runs as; created when left at the default.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = hasPrefix "/" cfg.source && (ext.source == null || hasPrefix "/" ext.source);
        message = "aiolabs.lnbits.source and aiolabs.lnbits.extensions.source must be absolute paths (got ${cfg.source}, ${toString ext.source}).";
      }
    ];

    users.users = mkIf (cfg.user == "lnbits") {
      lnbits = {
        isSystemUser = true;
        inherit (cfg) group;
        home = cfg.stateDir;
      };
    };
    users.groups = mkIf (cfg.group == "lnbits") { lnbits = { }; };

    systemd.tmpfiles.rules = [
      "d ${cfg.stateDir} 0750 ${cfg.user} ${cfg.group} - -"
    ]
    # `L+` removes whatever is at the path first, including a folder of UI-installed extensions.
    ++ optional (deployedExtensions != null && ext.mode == "symlink") "L+ ${extensionsDir} - - - - ${deployedExtensions}";

    systemd.services.lnbits = {
      description = "LNbits, a Lightning wallet and accounts system";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      environment = {
        LNBITS_DATA_FOLDER = cfg.stateDir;
        LNBITS_EXTENSIONS_PATH = cfg.stateDir;
        # The source the package was built from, in the store (as upstream's module: the package's src).
        LNBITS_PATH = cfg.sourceStorePath;
      }
      // cfg.env;
      # merge: copy the deployed extensions in, keep the UI-installed ones (no --delete);
      # --chmod=u+w: the store copy is read-only, LNbits may rewrite its extensions.
      preStart = lib.optionalString (deployedExtensions != null && ext.mode == "merge") ''
        if [ -L ${extensionsDir} ]; then rm ${extensionsDir}; fi
        mkdir -p ${extensionsDir}
        ${getExe pkgs.rsync} -a --chmod=u+w ${deployedExtensions}/ ${extensionsDir}/
      '';
      serviceConfig = {
        Type = "simple";
        User = cfg.user;
        Group = cfg.group;
        WorkingDirectory = cfg.stateDir;
        ExecStart = "${getExe cfg.package} --port ${toString cfg.port} --host 127.0.0.1";
        Restart = "always";
        RestartSec = 5;
        NoNewPrivileges = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectHome = true;
        ProtectSystem = "full";
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectControlGroups = true;
        RestrictSUIDSGID = true;
      };
    };

    aiolabs.health = {
      units = [ "lnbits.service" ];
      # LNbits' home page, through nginx to the unit.
      vhosts.${cfg.domain} = { };
    };

    aiolabs.nginx.enable = mkDefault true;
    services.nginx.virtualHosts.${cfg.domain} = {
      forceSSL = mkDefault cfg.enableACME;
      enableACME = mkDefault cfg.enableACME;
      locations."/" = {
        proxyPass = "http://127.0.0.1:${toString cfg.port}";
        # Upgrade/Connection headers for LNbits' WebSockets (payments, live updates).
        proxyWebsockets = true;
        # recommendedProxySettings is off fleet-wide (nginx.nix): set the headers here.
        extraConfig = ''
          proxy_set_header Host $host;
          proxy_set_header X-Real-IP $remote_addr;
          proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
          proxy_set_header X-Forwarded-Proto $scheme;
          proxy_read_timeout 1h;
        '';
      };
    };
  };
}
