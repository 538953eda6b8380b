# pict-rs image hosting behind nginx at img.<domain>.
{ config, lib, ... }:
let
  inherit (lib)
    literalExpression
    mkDefault
    mkEnableOption
    mkIf
    mkOption
    types
    ;

  cfg = config.aiolabs.pictrs;
in
{
  imports = [
    ./common.nix
    ./health.nix
  ];

  options.aiolabs.pictrs = {
    enable = mkEnableOption "pict-rs image hosting at img.<domain>";

    domain = mkOption {
      type = types.str;
      default = "img.${config.aiolabs.domain}";
      defaultText = literalExpression ''"img.''${config.aiolabs.domain}"'';
      description = "Virtual host name of the image service.";
    };

    port = mkOption {
      type = types.port;
      default = 8080;
      description = "Loopback port pict-rs listens on (behind nginx).";
    };

    maxUploadSize = mkOption {
      type = types.str;
      default = "50m";
      description = "Largest upload nginx passes to pict-rs (`client_max_body_size`).";
    };

    enableACME = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to get a Let's Encrypt certificate and force HTTPS.";
    };
  };

  config = mkIf cfg.enable {
    services.pict-rs = {
      enable = true;
      address = "127.0.0.1";
      inherit (cfg) port;
    };

    # NixOS's services.pict-rs runs as pict-rs.service; /healthz answers 200 once pict-rs
    # reaches its database and storage (pict-rs has no page at /).
    aiolabs.health = {
      units = [ "pict-rs.service" ];
      vhosts.${cfg.domain}.path = "/healthz";
    };

    aiolabs.nginx.enable = mkDefault true;
    services.nginx.virtualHosts.${cfg.domain} = {
      forceSSL = mkDefault cfg.enableACME;
      enableACME = mkDefault cfg.enableACME;
      locations."/" = {
        proxyPass = "http://127.0.0.1:${toString cfg.port}";
        extraConfig = ''
          client_max_body_size ${cfg.maxUploadSize};
          proxy_set_header Host $host;
          proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
          proxy_set_header X-Forwarded-Proto $scheme;
        '';
      };
    };
  };
}
