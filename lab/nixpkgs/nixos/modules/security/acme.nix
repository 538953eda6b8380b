# LAB (test infrastructure, not NixOS): security.acme (nixos/modules/security/acme/default.nix),
# with NixOS's assertion that the terms are accepted when a certificate is asked for. The lab has
# no ACME server: lab-httpd serves the lab CA's certificate for such virtual hosts.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.security.acme;
  opt =
    type: default: description:
    mkOption { inherit type default description; };
  defaultsModule = {
    options = {
      email = opt (types.nullOr types.str) null "Email address for account creation and correspondence from the CA.";
      server = opt (types.nullOr types.str) null "ACME Directory Resource URI.";
      webroot = opt (types.nullOr types.str) null "Where the webroot of the HTTP vhost is located.";
      dnsProvider = opt (types.nullOr types.str) null "DNS Challenge provider.";
      environmentFile = opt (types.nullOr types.str) null "Path to an EnvironmentFile for the cert's service.";
      group = opt types.str "acme" "Group running the ACME client.";
      reloadServices = opt (types.listOf types.str) [ ] "The list of systemd services to call `systemctl try-reload-or-restart` on.";
    };
  };
  certModule = {
    imports = [ defaultsModule ];
    options = {
      domain = opt (types.nullOr types.str) null "Domain to fetch certificate for (defaults to the entry name).";
      extraDomainNames = opt (types.listOf types.str) [ ] "A list of extra domain names, which are included in the one certificate to be issued.";
    };
  };
in
{
  options.security.acme = {
    acceptTerms = opt types.bool false "Accept the CA's terms of service.";
    useRoot = opt types.bool false "Whether to use the root user when generating certs.";
    defaults = opt (types.submodule defaultsModule) { } "Default values inheritable by all configured certs.";
    certs = opt (types.attrsOf (types.submodule certModule)) { } "Attribute set of certificates to get signed and renewed.";
  };

  config.assertions = lib.optionals (cfg.certs != { }) (
    [ {
      assertion = cfg.defaults.email != null || builtins.all (cert: cert.email != null) (builtins.attrValues cfg.certs);
      message = ''
        You must define `security.acme.certs.<name>.email` or
        `security.acme.defaults.email` to register with the CA. Note that using
        many different addresses for certs may trigger account rate limits.
      '';
    } ]
    ++ [
    {
      assertion = cfg.acceptTerms;
      message = ''
        You must accept the CA's terms of service before using
        the ACME module by setting `security.acme.acceptTerms`
        to `true`. For Let's Encrypt's ToS see https://letsencrypt.org/repository/
      '';
    }
  ]);
}
