# nginx for the fleet: TLS certificates from Let's Encrypt (ACME), fail2ban in
# front of it, and proxy settings that keep WebSockets working.
{ config, lib, ... }:
let
  inherit (lib)
    attrNames
    concatStringsSep
    mkDefault
    mkEnableOption
    mkIf
    mkOption
    types
    ;

  cfg = config.aiolabs.nginx;
  vhosts = config.services.nginx.virtualHosts;
  acmeHosts = builtins.filter (n: vhosts.${n}.enableACME) (attrNames vhosts);
in
{
  imports = [ ./health.nix ];

  options.aiolabs.nginx = {
    enable = mkEnableOption "the fleet's nginx (ACME, fail2ban, WebSocket-friendly proxying)";

    acmeEmail = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "admin@example.org";
      description = ''
        Let's Encrypt account email (from the inventory: `aiolabs_nixos_acme_email`).
        Setting it accepts the Let's Encrypt terms of service for this machine.
      '';
    };

    fail2ban.enable = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to ban clients that probe nginx or sshd (fail2ban).";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = acmeHosts != [ ] -> config.security.acme.defaults.email != null;
        message = ''
          ${concatStringsSep ", " acmeHosts} asks for a Let's Encrypt
          certificate but no ACME email is set. Set aiolabs_nixos_acme_email in
          inventory/group_vars/all.yml (it becomes aiolabs.nginx.acmeEmail), or disable ACME for the host.
        '';
      }
    ];

    services.nginx = {
      enable = true;
      # Off, not mkDefault: the global proxy headers include `Connection ""` for
      # keep-alive upstreams, which breaks LNbits' WebSocket upgrade. Vhosts that
      # want the headers set them per location (the atBB module does).
      recommendedProxySettings = false;
      recommendedTlsSettings = mkDefault true;
      recommendedOptimisation = mkDefault true;
      recommendedGzipSettings = mkDefault true;
    };

    security.acme = mkIf (cfg.acmeEmail != null) {
      acceptTerms = true;
      defaults.email = cfg.acmeEmail;
    };

    # The vhosts are the services' to declare (each module adds its own).
    aiolabs.health.units = [ "nginx.service" ];

    networking.firewall.allowedTCPPorts = [
      80
      443
    ];

    services.fail2ban = mkIf cfg.fail2ban.enable {
      enable = true;
      maxretry = mkDefault 5;
      bantime = mkDefault "1h";
      jails = {
        nginx-http-auth = mkDefault ''
          enabled = true
          port = http,https
          logpath = /var/log/nginx/error.log
        '';
        nginx-botsearch = mkDefault ''
          enabled = true
          port = http,https
          logpath = /var/log/nginx/access.log
        '';
      };
    };
  };
}
