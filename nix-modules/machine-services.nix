# Turns a machine's data (machine.nix, rendered from host_vars) into NixOS
# configuration: shared.nix with the domain, and each service switched on with
# its settings. Shape of the data (missing services are disabled):
#   {
#     hostName = "machine1";
#     domain = "machine1.example.org";
#     acmeEmail = "admin@example.org";                # optional
#     services = {
#       webapp = { enable = true; };                   # app.<domain>
#       lnbits = { enable = true; port = 5000; extensionsMode = "symlink"; };
#       pictrs = { enable = false; port = 8080; };     # img.<domain>
#       atbb = { enable = false; domain = "forum.<domain>"; forumDid = "did:plc:…";
#                pdsUrl = "https://…"; appviewPort = 3000; webPort = 3001; };
#     };
#   }
machine:
{ lib, ... }:
let
  inherit (lib) mkMerge optional optionalAttrs;

  services = machine.services or { };
  svc = name: services.${name} or { };
  enabled = name: (svc name).enable or false;
  # Copy the keys the data has; a missing key keeps the module's default.
  pick = attrs: names: builtins.intersectAttrs (lib.genAttrs names (_: null)) attrs;

  atbb = svc "atbb";
  # The atBB flake source, pushed by the atbb role. Its module is imported
  # directly; the flake itself is only read for the default package.
  atbbSource = atbb.source or "/var/src/atbb";
  lnbits = svc "lnbits";
in
{
  imports = [
    (import ./shared.nix {
      inherit (machine) domain;
      acmeEmail = machine.acmeEmail or null;
    })
  ]
  ++ optional (enabled "atbb") (import "${atbbSource}/nix/module.nix" (builtins.getFlake "path:${atbbSource}"));

  config = mkMerge [
    {
      networking.hostName = machine.hostName;
      aiolabs.webapp = { enable = enabled "webapp"; } // pick (svc "webapp") [ "domain" "root" ];
      aiolabs.pictrs = { enable = enabled "pictrs"; } // pick (svc "pictrs") [ "domain" "port" ];
      aiolabs.lnbits =
        { enable = enabled "lnbits"; }
        // pick lnbits [ "domain" "port" "source" ]
        // optionalAttrs (lnbits ? extensionsMode) { extensions.mode = lnbits.extensionsMode; };
    }
    (optionalAttrs (enabled "atbb") {
      # atBB brings its own vhost; the fleet's nginx settings (ACME email, fail2ban) cover it too.
      aiolabs.nginx.enable = lib.mkDefault true;
      services.atbb = {
        enable = true;
        environmentFile = atbb.environmentFile or "/var/lib/secrets/atbb.env";
      }
      // pick atbb [
        "domain"
        "forumDid"
        "pdsUrl"
        "appviewPort"
        "webPort"
        "autoMigrate"
        "seedDefaultRoles"
      ];
    })
  ];
}
