# LAB (test infrastructure, not NixOS): services.nginx (nixos/modules/services/web-servers/nginx/
# default.nix, vhost-options.nix, location-options.nix) with NixOS's names, types, defaults and
# assertions, implemented by lab-httpd instead of nginx: the virtual hosts become
# $toplevel/etc/lab/nginx.json and nginx.service runs `lab-httpd --config <that file in the store>`.
#
# nginx.json: {"listen": [{"addr", "port", "ssl"}...],
#              "vhosts": {NAME: {"serverAliases", "ssl", "forceSSL", "redirectCode", "cert", "key", "locations": [...]}}}
# ssl = onlySSL || addSSL || forceSSL; forceSSL makes port 80 answer redirectCode (301) https://NAME$uri;
# cert/key null means the lab's ACME (the lab CA's certificate for the host). Locations:
#   {"prefix", "proxy": "HOST:PORT"}     from proxyPass http://HOST:PORT[/...]
#   {"prefix", "static": DIR}            from root/alias (the vhost's root for tryFiles locations)
#   {"prefix", "respond": TEXT, "status": N}   from return = "N TEXT"
# Everything else an nginx configuration can say (extraConfig, headers, WebSockets) is accepted
# and not applied.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkOption
    mkIf
    types
    optionalAttrs
    ;
  inherit (builtins)
    attrNames
    attrValues
    filter
    head
    match
    toJSON
    any
    ;
  cfg = config.services.nginx;
  opt =
    type: default: description:
    mkOption { inherit type default description; };
  nstr = opt (types.nullOr types.str) null;
  strs = opt (types.listOf types.str) [ ];

  listenModule = {
    options = {
      addr = mkOption {
        type = types.str;
        description = "Listen address.";
      };
      port = opt (types.nullOr types.port) null "Port number to listen on.";
      ssl = opt types.bool false "Enable SSL.";
      proxyProtocol = opt types.bool false "Enable PROXY protocol.";
      extraParameters = strs "Extra parameters of this listen directive.";
    };
  };

  locationModule = {
    options = {
      proxyPass = nstr "Adds proxy_pass directive and sets recommended proxy headers if recommendedProxySettings is enabled.";
      proxyWebsockets = opt types.bool false "Whether to support proxying websocket connections with HTTP/1.1.";
      index = nstr "Adds index directive.";
      tryFiles = nstr "Adds try_files directive.";
      root = opt (types.nullOr types.path) null "Root directory for requests.";
      alias = opt (types.nullOr types.path) null "Alias directory for requests.";
      return = opt (types.nullOr (types.oneOf [
        types.str
        types.int
      ])) null "Adds a return directive, for e.g. redirections.";
      fastcgiParams = opt (types.attrsOf (types.either types.str types.path)) { } "FastCGI parameters to override.";
      basicAuth = opt (types.attrsOf types.str) { } "Basic Auth protection for a vhost.";
      basicAuthFile = opt (types.nullOr types.path) null "Basic Auth password file for a vhost.";
      extraConfig = opt types.lines "" "These lines go to the end of the location verbatim.";
      priority = opt types.int 1000 "Order of this location block in relation to the others in the vhost.";
      recommendedProxySettings = opt types.bool cfg.recommendedProxySettings "Enable recommended proxy settings.";
    };
  };

  vhostModule =
    { name, ... }:
    {
      options = {
        serverName = nstr "Name of this virtual host. Defaults to attribute name in virtualHosts.";
        serverAliases = strs "Additional names of virtual hosts served by this virtual host configuration.";
        listen = opt (types.listOf (types.submodule listenModule)) [ ] "Listen addresses and ports for this virtual host.";
        listenAddresses = strs "Listen addresses for this virtual host.";
        enableACME = opt types.bool false "Whether to ask Let's Encrypt to sign a certificate for this vhost.";
        useACMEHost = nstr "A host of an existing Let's Encrypt certificate to use.";
        acmeRoot = opt (types.nullOr types.str) "/var/lib/acme/acme-challenge" "Directory for the ACME challenge.";
        acmeFallbackHost = nstr "Host which to proxy requests to if ACME challenge is not found.";
        addSSL = opt types.bool false "Whether to enable HTTPS in addition to plain HTTP.";
        onlySSL = opt types.bool false "Whether to enable HTTPS and reject plain HTTP connections.";
        forceSSL = opt types.bool false "Whether to add a separate nginx server block that redirects (defaults to 301) all plain HTTP traffic to HTTPS.";
        rejectSSL = opt types.bool false "Whether to listen for and reject all HTTPS connections to this vhost.";
        kTLS = opt types.bool false "Whether to enable kTLS support.";
        http2 = opt types.bool true "Whether to enable the HTTP/2 protocol.";
        http3 = opt types.bool true "Whether to enable the HTTP/3 protocol.";
        sslCertificate = opt (types.nullOr types.path) null "Path to server SSL certificate.";
        sslCertificateKey = opt (types.nullOr types.path) null "Path to server SSL certificate key.";
        sslTrustedCertificate = opt (types.nullOr types.path) null "Path to root SSL certificate for stapling and client certificates.";
        root = opt (types.nullOr types.path) null "The path of the web root directory.";
        default = opt types.bool false "Makes this vhost the default.";
        globalRedirect = nstr "If set, all requests for this host are redirected (defaults to 301, configurable with redirectCode) to the given hostname.";
        redirectCode = opt types.int 301 "HTTP status used by globalRedirect and forceSSL.";
        basicAuth = opt (types.attrsOf types.str) { } "Basic Auth protection for a vhost.";
        basicAuthFile = opt (types.nullOr types.path) null "Basic Auth password file for a vhost.";
        extraConfig = opt types.lines "" "These lines go to the end of the vhost verbatim.";
        locations = opt (types.attrsOf (types.submodule locationModule)) { } "Declarative location config.";
      };
    };

  vhostName = n: v: if v.serverName != null then v.serverName else n;
  isSSL = v: v.onlySSL || v.addSSL || v.forceSSL;
  acmeName = n: v: if v.useACMEHost != null then v.useACMEHost else vhostName n v;

  # proxyPass "http://127.0.0.1:5000/x" -> "127.0.0.1:5000"
  proxyTarget =
    url:
    let
      m = match "[a-z]+://([^/]+)(/.*)?" url;
    in
    if m == null then url else head m;
  parseReturn =
    r:
    let
      m = match "([0-9]+)( +(.*))?" (toString r);
    in
    if m == null then
      {
        respond = toString r;
        status = 200;
      }
    else
      {
        respond =
          let
            t = builtins.elemAt m 2;
          in
          if t == null then "" else t;
        status = builtins.fromJSON (head m);
      };
  location =
    v: prefix: l:
    {
      inherit prefix;
    }
    // (
      if l.proxyPass != null then
        { proxy = proxyTarget l.proxyPass; }
      else if l.return != null then
        parseReturn l.return
      else if l.alias != null then
        { static = toString l.alias; }
      else if l.root != null then
        { static = toString l.root; }
      else if v.root != null then
        { static = toString v.root; }
      else
        {
          respond = "";
          status = 404;
        }
    );
  vhostJSON = n: v: {
    inherit (v) serverAliases forceSSL redirectCode;
    ssl = isSSL v;
    cert = if v.sslCertificate != null then toString v.sslCertificate else null;
    key = if v.sslCertificateKey != null then toString v.sslCertificateKey else null;
    locations =
      let
        declared = map (p: location v p v.locations.${p}) (attrNames v.locations);
      in
      if v.locations ? "/" || v.root == null then declared else declared ++ [ (location v "/" { proxyPass = null; return = null; alias = null; root = null; }) ];
  };
  vhosts = builtins.listToAttrs (
    map (n: {
      name = vhostName n cfg.virtualHosts.${n};
      value = vhostJSON n cfg.virtualHosts.${n};
    }) (attrNames cfg.virtualHosts)
  );
  anySSL = any isSSL (attrValues cfg.virtualHosts);
  anyPlain = any (v: !v.onlySSL) (attrValues cfg.virtualHosts) || cfg.virtualHosts == { };
  listenAddrs = filter (a: match ".*:.*" a == null) cfg.defaultListenAddresses;
  labConfig = {
    listen =
      lib.optionals anyPlain (
        map (addr: {
          inherit addr;
          port = cfg.defaultHTTPListenPort;
          ssl = false;
        }) listenAddrs
      )
      ++ lib.optionals anySSL (
        map (addr: {
          inherit addr;
          port = cfg.defaultSSLListenPort;
          ssl = true;
        }) listenAddrs
      );
    inherit vhosts;
  };
  configFile = pkgs.writeText "nginx.json" (toJSON labConfig);
in
{
  options.services.nginx = {
    enable = opt types.bool false "Whether to enable Nginx Web Server.";
    package = opt types.package pkgs.nginx "Nginx package to use (lab: lab-httpd serves the configuration).";
    user = opt types.str "nginx" "User account under which nginx runs.";
    group = opt types.str "nginx" "Group account under which nginx runs.";
    statusPage = opt types.bool false "Enable status page reachable from localhost on http://127.0.0.1/nginx_status.";
    recommendedProxySettings = opt types.bool false "Whether to enable recommended proxy settings if a vhost does not specify the option manually.";
    recommendedTlsSettings = opt types.bool false "Enable recommended TLS settings.";
    recommendedOptimisation = opt types.bool false "Enable recommended optimisation settings.";
    recommendedGzipSettings = opt types.bool false "Enable recommended gzip settings.";
    recommendedBrotliSettings = opt types.bool false "Enable recommended brotli settings.";
    recommendedZstdSettings = opt types.bool false "Enable recommended zstd settings.";
    clientMaxBodySize = opt types.str "10m" "Set nginx global client_max_body_size.";
    serverTokens = opt types.bool false "Show nginx version in headers and error pages.";
    enableReload = opt types.bool false "Reload nginx when configuration file changes (instead of restart).";
    defaultListenAddresses = opt (types.listOf types.str) (
      [ "0.0.0.0" ] ++ lib.optional config.networking.enableIPv6 "[::0]"
    ) "If vhosts do not specify listenAddresses, use these addresses by default.";
    defaultHTTPListenPort = opt types.port 80 "If vhosts do not specify listen.port, use these ports for HTTP by default.";
    defaultSSLListenPort = opt types.port 443 "If vhosts do not specify listen.port, use these ports for SSL by default.";
    appendHttpConfig = opt types.lines "" "Configuration lines to be appended to the generated http block.";
    commonHttpConfig = opt types.lines "" "With nginx you must provide common http context definitions before they are used.";
    appendConfig = opt types.lines "" "Configuration lines appended to the generated Nginx configuration file.";
    eventsConfig = opt types.lines "" "Configuration lines to be set inside the events block.";
    upstreams = opt (types.attrsOf types.anything) { } "Defines a group of servers to use as proxy target.";
    virtualHosts = opt (types.attrsOf (types.submodule vhostModule)) {
      localhost = { };
    } "Declarative vhost config.";
    lab.configFile = mkOption {
      internal = true;
      readOnly = true;
      default = configFile;
      description = "LAB: the nginx.json lab-httpd serves (written to /etc/lab/nginx.json).";
    };
  };

  config = mkIf cfg.enable {
    assertions =
      map (n: {
        assertion =
          let
            v = cfg.virtualHosts.${n};
          in
          builtins.length (filter (x: x) [
            v.addSSL
            (v.onlySSL || v.enableSSL or false)
            v.forceSSL
            v.rejectSSL
          ]) <= 1;
        message = ''
          Options services.nginx.service.virtualHosts.<name>.addSSL,
          services.nginx.virtualHosts.<name>.onlySSL,
          services.nginx.virtualHosts.<name>.forceSSL and
          services.nginx.virtualHosts.<name>.rejectSSL are mutually exclusive.
        '';
      }) (attrNames cfg.virtualHosts)
      ++ map (n: {
        assertion = !(cfg.virtualHosts.${n}.enableACME && cfg.virtualHosts.${n}.useACMEHost != null);
        message = ''
          Options services.nginx.service.virtualHosts.<name>.enableACME and
          services.nginx.virtualHosts.<name>.useACMEHost are mutually exclusive.
        '';
      }) (attrNames cfg.virtualHosts);

    security.acme.certs = builtins.listToAttrs (
      map (n: {
        name = acmeName n cfg.virtualHosts.${n};
        value = {
          extraDomainNames = cfg.virtualHosts.${n}.serverAliases;
        };
      }) (filter (n: cfg.virtualHosts.${n}.enableACME) (attrNames cfg.virtualHosts))
    );

    environment.etc."lab/nginx.json".source = configFile;

    systemd.services.nginx = {
      description = "Nginx Web Server";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      stopIfChanged = false;
      serviceConfig = {
        # lab-httpd, not nginx (see the top of this file).
        ExecStart = "/opt/lab/bin/lab-httpd --config ${configFile}";
        Restart = "always";
        RestartSec = "10s";
      };
    };

    users.users = optionalAttrs (cfg.user == "nginx") {
      nginx = {
        group = cfg.group;
        isSystemUser = true;
        uid = 60;
      };
    };
    users.groups = optionalAttrs (cfg.group == "nginx") { nginx.gid = 60; };
  };
}
