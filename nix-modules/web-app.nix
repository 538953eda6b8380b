# The machine's web app: static files built on the controller for this machine
# (its .env and images) and pushed to /var/src/web-app-dist, served at app.<domain>.
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

    root = mkOption {
      type = types.str;
      default = "/var/src/web-app-dist";
      description = ''
        Directory with the built web app. A run-time path (a string, not copied into
        the store): a new build is served without rebuilding the system.
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
        assertion = hasPrefix "/" cfg.root && !(hasPrefix builtins.storeDir cfg.root);
        message = "aiolabs.webapp.root must be an absolute run-time path such as /var/src/web-app-dist (got ${cfg.root}).";
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
