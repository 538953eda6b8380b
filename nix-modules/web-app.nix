# The machine's web app: static files built on the controller for this machine
# (its .env and images), pushed to /var/src/web-app-dist and copied from there into
# the store when the system is evaluated, so nginx serves app.<domain> from the
# system's own copy: a rollback serves the previous build, and a push that is still
# running (rsync --delete) is never what visitors see.
{ config, lib, ... }:
let
  inherit (lib)
    hasPrefix
    literalExpression
    mkDefault
    mkEnableOption
    mkIf
    mkOption
    types
    ;

  cfg = config.aiolabs.webapp;
  inStore = hasPrefix "${builtins.storeDir}/";

  # Read at evaluation time: the tree must be there when nixos-rebuild runs.
  sourceCopy =
    if !(hasPrefix "/" cfg.source) then
      throw "aiolabs.webapp.source must be an absolute path such as /var/src/web-app-dist (got ${cfg.source})."
    else if !(builtins.pathExists "${cfg.source}/index.html") then
      throw "aiolabs.webapp.source: ${cfg.source} has no index.html. Push the built web app there (the aiolabs.nixos.webapp role, entry point push) before the switch, or point aiolabs.webapp.source at the build."
    else
      builtins.path {
        path = /. + cfg.source;
        name = "web-app-dist";
      };
in
{
  imports = [
    ./common.nix
    ./health.nix
  ];

  options.aiolabs.webapp = {
    enable = mkEnableOption "the web app virtual host";

    domain = mkOption {
      type = types.str;
      default = "app.${config.aiolabs.domain}";
      defaultText = literalExpression ''"app.''${config.aiolabs.domain}"'';
      description = "Virtual host name of the web app.";
    };

    source = mkOption {
      type = types.str;
      default = "/var/src/web-app-dist";
      description = ''
        Where the deploy pushes the built web app (an absolute path on the machine, with an
        `index.html`). It is read when the system is evaluated and copied into the store as
        the default of {option}`aiolabs.webapp.root`; evaluation fails, naming this option,
        when the folder or its `index.html` is missing.
      '';
    };

    root = mkOption {
      type = types.str;
      default = sourceCopy;
      defaultText = literalExpression ''builtins.path { path = /. + config.aiolabs.webapp.source; name = "web-app-dist"; }'';
      example = "/srv/web-app";
      description = ''
        Directory nginx serves. By default a store copy of {option}`aiolabs.webapp.source`,
        part of the system: a rollback serves the previous build, a new build is served
        only after a switch, and a push in progress is never served. A store path must
        carry its context (`builtins.path`, `"''${./dist}"` or a derivation), so that it stays
        in the system's closure. An absolute run-time path outside the store (a string)
        restores the old behaviour: a push is served at once, without a switch, and a
        rollback does not bring the previous build back.
      '';
    };

    enableACME = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to get a Let's Encrypt certificate and force HTTPS.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = hasPrefix "/" cfg.root && (inStore cfg.root -> builtins.hasContext cfg.root);
        message = "aiolabs.webapp.root must be a store path with its context (the default, a copy of aiolabs.webapp.source, or builtins.path { path = …; }) or an absolute run-time path outside the store such as /srv/web-app (got ${cfg.root}: ${
          if inStore cfg.root then "a store path written as a plain string is not kept in the system's closure" else "not absolute"
        }).";
      }
    ];

    aiolabs.nginx.enable = mkDefault true;
    services.nginx.virtualHosts.${cfg.domain} = {
      forceSSL = mkDefault cfg.enableACME;
      enableACME = mkDefault cfg.enableACME;
      inherit (cfg) root;
      # A single-page app: unknown paths get index.html, the router takes over.
      locations."/".tryFiles = "$uri $uri/ /index.html";
    };
    # The app's index.html (every path answers it).
    aiolabs.health.vhosts.${cfg.domain} = { };
  };
}
