# NixOS module `services.atbb`: the atBB appview (API) and web (UI) servers as
# systemd units, a database migration oneshot, an nginx virtual host and an
# optional local PostgreSQL. Secrets reach the units only through
# `environmentFile`, never through the Nix store.
#
# `self` is the atBB flake (for the default package).
self:
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    boolToString
    hasPrefix
    literalExpression
    mkDefault
    mkEnableOption
    mkIf
    mkOption
    optional
    types
    ;

  cfg = config.services.atbb;
  nodejs = pkgs.nodejs_22;
  appviewDir = "${cfg.package}/apps/appview";
  webDir = "${cfg.package}/apps/web";
  appviewUrl = "http://127.0.0.1:${toString cfg.appviewPort}";
  webUrl = "http://127.0.0.1:${toString cfg.webPort}";
  # Services the appview needs before it starts.
  databaseUnits = optional cfg.database.enable "postgresql.service";

  # The hardening shared by the three units. Every relaxation says why.
  hardening = {
    AmbientCapabilities = "";
    CapabilityBoundingSet = "";
    DevicePolicy = "closed";
    LockPersonality = true;
    # Relaxed: Node's V8 compiles JavaScript to machine code at run time, which
    # needs writable+executable memory; `true` makes node abort at start.
    MemoryDenyWriteExecute = false;
    NoNewPrivileges = true;
    PrivateDevices = true;
    PrivateTmp = true;
    PrivateUsers = true;
    ProcSubset = "pid";
    ProtectClock = true;
    ProtectControlGroups = true;
    ProtectHome = true;
    ProtectHostname = true;
    ProtectKernelLogs = true;
    ProtectKernelModules = true;
    ProtectKernelTunables = true;
    ProtectProc = "invisible";
    ProtectSystem = "strict";
    RemoveIPC = true;
    # Relaxed beyond AF_INET/AF_INET6: AF_UNIX is needed for the local
    # PostgreSQL socket in /run/postgresql (peer authentication).
    RestrictAddressFamilies = [
      "AF_INET"
      "AF_INET6"
      "AF_UNIX"
    ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service"
      # Relaxed: V8 uses memory protection keys (pkey_mprotect) for its JIT pages.
      "@pkey"
      "~@privileged"
      "~@resources"
    ];
    UMask = "0077";
  };
in
{
  options.services.atbb = {
    enable = mkEnableOption "atBB, a decentralized BB-style forum on AT Protocol";

    package = mkOption {
      type = types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      defaultText = literalExpression "atbb.packages.\${pkgs.stdenv.hostPlatform.system}.default";
      description = "The atBB package to use.";
    };

    domain = mkOption {
      type = types.str;
      example = "forum.example.org";
      description = "Domain name of the forum; the nginx virtual host is named after it.";
    };

    enableNginx = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to configure nginx as the reverse proxy in front of appview and web.";
    };

    enableACME = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to get a Let's Encrypt certificate for {option}`services.atbb.domain`
        and force HTTPS. Requires {option}`security.acme.acceptTerms` and
        {option}`security.acme.defaults.email`.
      '';
    };

    oauthPublicUrl = mkOption {
      type = types.str;
      default = "https://${cfg.domain}";
      defaultText = literalExpression ''"https://''${config.services.atbb.domain}"'';
      example = "https://forum.example.org";
      description = ''
        Public base URL under which the OAuth client metadata is served
        (`OAUTH_PUBLIC_URL`). Must be https, except for a loopback address during development.
      '';
    };

    forumDid = mkOption {
      type = types.str;
      example = "did:plc:abcdefghijklmnopqrstuvwx";
      description = "The forum's AT Protocol DID (`FORUM_DID`).";
    };

    pdsUrl = mkOption {
      type = types.str;
      example = "https://pds.example.org";
      description = "URL of the PDS that hosts the forum account (`PDS_URL`).";
    };

    environmentFile = mkOption {
      type = types.path;
      example = "/run/secrets/atbb.env";
      description = ''
        Environment file with the secrets, read by systemd at unit start (it never
        enters the Nix store). Must define `DATABASE_URL`, `SESSION_SECRET`,
        `FORUM_HANDLE` and `FORUM_PASSWORD`. With
        {option}`services.atbb.database.enable`, `DATABASE_URL` should be
        `postgres:///atbb?host=/run/postgresql` (peer authentication over the Unix socket).
        Give it as a string: a Nix path literal would be copied into the store.
      '';
    };

    database = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Whether to create the database and its owner on a local PostgreSQL 17
          (`services.postgresql`).
        '';
      };

      name = mkOption {
        type = types.str;
        default = "atbb";
        description = ''
          Name of the PostgreSQL database. With {option}`services.atbb.database.enable`
          it must equal {option}`services.atbb.user` (`ensureDBOwnership`).
        '';
      };
    };

    appviewPort = mkOption {
      type = types.port;
      default = 3000;
      description = "Port of the appview API server (loopback only, behind nginx).";
    };

    webPort = mkOption {
      type = types.port;
      default = 3001;
      description = "Port of the web UI server (loopback only, behind nginx).";
    };

    seedDefaultRoles = mkOption {
      type = types.bool;
      default = true;
      description = "Whether the appview seeds the default forum roles when it starts.";
    };

    autoMigrate = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether to run the database migrations (`atbb-migrate.service`) before the
        appview starts. When false, run them by hand: `systemctl start atbb-migrate`.
        drizzle-kit records applied migrations, so a run with nothing pending is a no-op.
      '';
    };

    user = mkOption {
      type = types.str;
      default = "atbb";
      description = "User the atBB services run as; created when left at the default.";
    };

    group = mkOption {
      type = types.str;
      default = "atbb";
      description = "Group the atBB services run as; created when left at the default.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.enableNginx && cfg.enableACME -> config.security.acme.acceptTerms;
        message = ''
          services.atbb.enableACME needs the Let's Encrypt terms accepted: set
          security.acme.acceptTerms = true and security.acme.defaults.email = "you@example.org",
          or set services.atbb.enableACME = false to serve ${cfg.domain} without a certificate.
        '';
      }
      {
        assertion = !(builtins.isPath cfg.environmentFile) && !(hasPrefix builtins.storeDir (toString cfg.environmentFile));
        message = ''
          services.atbb.environmentFile (${toString cfg.environmentFile}) is in, or would be copied
          into, the world-readable Nix store. Give the absolute path of a root-only file as a string,
          e.g. "/run/secrets/atbb.env", and put DATABASE_URL, SESSION_SECRET, FORUM_HANDLE and
          FORUM_PASSWORD in it.
        '';
      }
      {
        assertion = cfg.database.enable -> cfg.database.name == cfg.user;
        message = ''
          services.atbb.database.enable makes ${cfg.user} the owner of the database of the same
          name (ensureDBOwnership), but services.atbb.database.name is "${cfg.database.name}".
          Set services.atbb.database.name = "${cfg.user}", or database.enable = false and manage
          the database yourself.
        '';
      }
      {
        assertion = cfg.appviewPort != cfg.webPort;
        message = "services.atbb.appviewPort and services.atbb.webPort are both ${toString cfg.webPort}; give them different ports.";
      }
      {
        assertion = hasPrefix "did:" cfg.forumDid;
        message = ''services.atbb.forumDid must be an AT Protocol DID such as "did:plc:…" (got "${cfg.forumDid}").'';
      }
      {
        assertion =
          hasPrefix "https://" cfg.oauthPublicUrl
          || hasPrefix "http://localhost" cfg.oauthPublicUrl
          || hasPrefix "http://127.0.0.1" cfg.oauthPublicUrl;
        message = ''
          services.atbb.oauthPublicUrl (${cfg.oauthPublicUrl}) must be an https:// URL: AT Protocol
          OAuth accepts plain http only for loopback clients. Leave it unset to use https://${cfg.domain}.
        '';
      }
    ];

    users.users = mkIf (cfg.user == "atbb") {
      atbb = {
        isSystemUser = true;
        inherit (cfg) group;
        description = "atBB service user";
      };
    };
    users.groups = mkIf (cfg.group == "atbb") { atbb = { }; };

    services.postgresql = mkIf cfg.database.enable {
      enable = true;
      package = mkDefault pkgs.postgresql_17;
      ensureDatabases = [ cfg.database.name ];
      ensureUsers = [
        {
          name = cfg.user;
          ensureDBOwnership = true;
        }
      ];
    };

    systemd.services.atbb-migrate = {
      description = "atBB database migration";
      after = [ "network.target" ] ++ databaseUnits;
      requires = databaseUnits;
      serviceConfig = hardening // {
        Type = "oneshot";
        RemainAfterExit = true;
        User = cfg.user;
        Group = cfg.group;
        WorkingDirectory = appviewDir;
        ExecStart = "${nodejs}/bin/node ${appviewDir}/node_modules/.bin/drizzle-kit migrate";
        EnvironmentFile = cfg.environmentFile;
      };
    };

    systemd.services.atbb-appview = {
      description = "atBB AppView API server";
      after = [ "network.target" ] ++ databaseUnits ++ optional cfg.autoMigrate "atbb-migrate.service";
      requires = databaseUnits ++ optional cfg.autoMigrate "atbb-migrate.service";
      wantedBy = [ "multi-user.target" ];
      environment = {
        NODE_ENV = "production";
        PORT = toString cfg.appviewPort;
        FORUM_DID = cfg.forumDid;
        PDS_URL = cfg.pdsUrl;
        OAUTH_PUBLIC_URL = cfg.oauthPublicUrl;
        SEED_DEFAULT_ROLES = boolToString cfg.seedDefaultRoles;
      };
      serviceConfig = hardening // {
        Type = "simple";
        User = cfg.user;
        Group = cfg.group;
        WorkingDirectory = appviewDir;
        ExecStart = "${nodejs}/bin/node ${appviewDir}/dist/index.js";
        EnvironmentFile = cfg.environmentFile;
        Restart = "on-failure";
        RestartSec = 5;
      };
    };

    systemd.services.atbb-web = {
      description = "atBB Web UI server";
      after = [ "network.target" "atbb-appview.service" ];
      wantedBy = [ "multi-user.target" ];
      environment = {
        NODE_ENV = "production";
        WEB_PORT = toString cfg.webPort;
        APPVIEW_URL = appviewUrl;
      };
      # The web server holds no secrets: no EnvironmentFile.
      serviceConfig = hardening // {
        Type = "simple";
        User = cfg.user;
        Group = cfg.group;
        WorkingDirectory = webDir;
        ExecStart = "${nodejs}/bin/node ${webDir}/dist/index.js";
        Restart = "on-failure";
        RestartSec = 5;
      };
    };

    services.nginx = mkIf cfg.enableNginx {
      enable = true;
      # mkDefault: a fleet-wide nginx configuration may decide otherwise (the
      # locations below ask for the proxy headers themselves).
      recommendedProxySettings = mkDefault true;
      recommendedTlsSettings = mkDefault true;
      recommendedOptimisation = mkDefault true;
      virtualHosts.${cfg.domain} = {
        forceSSL = mkDefault cfg.enableACME;
        enableACME = mkDefault cfg.enableACME;
        locations = {
          # OAuth client metadata and DID documents come from the appview.
          "/.well-known/" = {
            proxyPass = appviewUrl;
            recommendedProxySettings = true;
          };
          "/api/" = {
            proxyPass = appviewUrl;
            recommendedProxySettings = true;
          };
          "/" = {
            proxyPass = webUrl;
            recommendedProxySettings = true;
          };
        };
      };
    };
  };
}
