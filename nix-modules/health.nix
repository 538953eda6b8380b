# The health checks a system declares about itself: which systemd units must be active and
# which nginx virtual hosts must answer once it is switched to. Every service module adds its
# own (nginx.nix, lnbits.nix, pict-rs.nix, web-app.nix; machine-services.nix for atBB), and this
# module writes them into the system it builds, as $toplevel/etc/aiolabs-nixos/health.json
# (/etc/aiolabs-nixos/health.json once activated). The deploy checks exactly what the new
# system says, and a rollback brings the old system's declaration back with the old system.
#
# The scheme and ports of each vhost check come from services.nginx.virtualHosts.<name>, with
# the semantics of NixOS's nginx module:
#   forceSSL  https on the SSL port with the declared status, and plain http on the HTTP port
#             answering redirectCode (301) with `Location: https://<name><path>`
#             (`return 301 https://$host$request_uri;`);
#   onlySSL   https only (plain http is not served for the vhost);
#   addSSL    https and plain http, both with the declared status;
#   none      plain http only (rejectSSL too).
# A vhost with `listen` entries is probed on their ports (the first with ssl = true for https,
# the first without for http; a null port is the default one), as nginx listens there.
#
# JSON, version 1 (read by plugins/module_utils/_health.py):
#   { "version": 1, "units": [ "nginx.service", ... ],
#     "http": [ { "host", "scheme", "port", "path", "status", "contains", "location" }, ... ] }
{ config, lib, ... }:
let
  inherit (lib)
    attrNames
    concatMap
    concatStringsSep
    filter
    head
    mkOption
    optional
    types
    ;

  cfg = config.aiolabs.health;
  nginx = config.services.nginx;
  vhosts = nginx.virtualHosts;

  vhostCheck =
    { name, ... }:
    {
      options = {
        path = mkOption {
          type = types.strMatching "/.*";
          default = "/";
          example = "/healthz";
          description = ''
            Path requested from the vhost `${name}` (with `Host: ${name}`, and SNI over https).
          '';
        };
        status = mkOption {
          type = types.ints.between 100 599;
          default = 200;
          description = ''
            Status the vhost must answer for {option}`path` (over https where it has SSL, else
            over plain http). The plain-http redirect of a forceSSL vhost is checked against
            its `redirectCode` instead.
          '';
        };
        contains = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "<title>";
          description = "Text the answer's body must contain (null: the status alone decides).";
        };
      };
    };

  # The port nginx serves this vhost on, for plain http (ssl = false) or https (ssl = true).
  portOf =
    v: ssl:
    let
      fallback = if ssl then nginx.defaultSSLListenPort else nginx.defaultHTTPListenPort;
      entries = filter (l: l.ssl == ssl) v.listen;
      port = if entries == [ ] then null else (head entries).port;
    in
    if port == null then fallback else port;

  checksOf =
    name: want:
    let
      v = vhosts.${name};
      host = if v.serverName != null then v.serverName else name;
      https = v.onlySSL || v.addSSL || v.forceSSL;
      page = scheme: ssl: {
        inherit host scheme;
        port = portOf v ssl;
        inherit (want) path status contains;
        location = null;
      };
    in
    optional https (page "https" true)
    ++ optional (!https || v.addSSL) (page "http" false)
    ++ optional v.forceSSL {
      inherit host;
      scheme = "http";
      port = portOf v false;
      inherit (want) path;
      status = v.redirectCode;
      contains = null;
      location = "https://${host}${want.path}";
    };

  declared = filter (n: vhosts ? ${n}) (attrNames cfg.vhosts);
  missing = filter (n: !(vhosts ? ${n})) (attrNames cfg.vhosts);

  health = {
    version = 1;
    units = lib.unique (builtins.sort builtins.lessThan cfg.units);
    http = concatMap (n: checksOf n cfg.vhosts.${n}) declared;
  };
in
{
  options.aiolabs.health = {
    units = mkOption {
      type = types.listOf (
        types.strMatching "[^/ ]+[.](service|socket|target|timer|mount|automount|swap|path|slice|scope)"
      );
      default = [ ];
      example = [
        "nginx.service"
        "lnbits.service"
      ];
      description = ''
        systemd units that must be active after a switch to this system. Definitions from
        every module are merged; the file lists them sorted, each once.
      '';
    };

    vhosts = mkOption {
      type = types.attrsOf (types.submodule vhostCheck);
      default = { };
      example = {
        "img.example.org".path = "/healthz";
      };
      description = ''
        nginx virtual hosts that must answer after a switch, by their name in
        {option}`services.nginx.virtualHosts`. The scheme and ports of the checks follow the
        vhost's `forceSSL`/`onlySSL`/`addSSL` and `listen` settings (see the top of this file).
      '';
    };
  };

  config = {
    assertions = [
      {
        assertion = missing == [ ];
        message = ''
          aiolabs.health.vhosts names ${concatStringsSep ", " missing}, which
          services.nginx.virtualHosts does not declare: a check of it would fail.
        '';
      }
      {
        assertion = declared != [ ] -> nginx.enable;
        message = "aiolabs.health.vhosts lists virtual hosts but services.nginx.enable is false, so none of them would answer.";
      }
    ];

    environment.etc."aiolabs-nixos/health.json".text = builtins.toJSON health;
  };
}
