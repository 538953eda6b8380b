# Turns a machine's data (machine.nix, rendered from host_vars) into NixOS
# configuration: the whole machine (stateVersion, boot loader, network, root's
# SSH keys: the deploy replaces the host's own /etc/nixos configuration, so
# these must come from here), shared.nix with the domain, and each service
# switched on with its settings. Shape of the data (missing services are disabled):
#   {
#     hostName = "machine1";
#     domain = "machine1.example.org";
#     stateVersion = "25.05";                         # required, never guessed
#     # boot.loader and networking settings, shaped as the NixOS options; empty
#     # for type "assets" (a module of the machine's assets sets them).
#     bootLoader = { type = "grub"; settings = { grub = { enable = true; devices = [ "/dev/sda" ]; }; }; };
#     networking = { type = "dhcp"; settings = { useDHCP = true; }; };
#     rootAccess = "keys";                            # or "other": access comes from the machine's modules
#     rootAuthorizedKeys = [ "ssh-ed25519 AAAA… ops@example.org" ];
#     acmeEmail = "admin@example.org";                # optional
#     services = {
#       webapp = { enable = true; };                   # app.<domain>
#       lnbits = { enable = true; port = 5000; extensionsMode = "symlink"; };
#       # (also source, extensionsSource; webapp: source, root: the module options, for tests)
#       pictrs = { enable = false; port = 8080; };     # img.<domain>
#       atbb = { enable = false; domain = "forum.<domain>"; forumDid = "did:plc:…";
#                pdsUrl = "https://…"; appviewPort = 3000; webPort = 3001; };
#     };
#   }
machine:
{ config, lib, ... }:
let
  inherit (lib) mkMerge optional optionalAttrs;

  host = machine.hostName;
  # machine_config validates these before anything is pushed; a machine.nix written by
  # hand still gets a message naming the host_vars variable, not Nix's "attribute missing".
  need =
    name: var:
    machine.${name} or (throw "${host}: machine.nix has no ${name}; set ${var} in host_vars/${host}.yml");
  bootLoader = need "bootLoader" "boot_loader";
  network = need "networking" "networking";
  rootAccess = machine.rootAccess or "keys";
  ssh = config.services.openssh;
  rootKeys = config.users.users.root.openssh.authorizedKeys;

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
      system.stateVersion = need "stateVersion" "state_version";
      boot.loader = bootLoader.settings;
      networking = network.settings;
      # The deploy connects as root over SSH: these keys are how it (and you) get in after
      # the switch. NixOS's sshd also reads ~/.ssh/authorized_keys, which the deploy leaves alone.
      users.users.root.openssh.authorizedKeys.keys = machine.rootAuthorizedKeys or [ ];
      assertions = lib.optionals (rootAccess == "keys") [
        {
          assertion = rootKeys.keys or [ ] ++ rootKeys.keyFiles or [ ] != [ ];
          message = "${host}: root has no authorized SSH keys; set root_authorized_keys (or root_access: other).";
        }
        {
          assertion = ssh.enable;
          message = "${host}: services.openssh.enable is false, so the deploy (which connects as root over SSH) would be locked out; set root_access: other if the machine is reached another way.";
        }
        {
          assertion = (ssh.settings.PermitRootLogin or "prohibit-password") != "no";
          message = "${host}: services.openssh.settings.PermitRootLogin is \"no\", so root's keys cannot log in and the deploy would be locked out; set root_access: other if it connects as another user.";
        }
      ];
    }
    {
      networking.hostName = machine.hostName;
      aiolabs.webapp = { enable = enabled "webapp"; } // pick (svc "webapp") [ "domain" "source" "root" ];
      aiolabs.pictrs = { enable = enabled "pictrs"; } // pick (svc "pictrs") [ "domain" "port" ];
      aiolabs.lnbits =
        { enable = enabled "lnbits"; }
        // pick lnbits [ "domain" "port" "source" ]
        // {
          extensions =
            optionalAttrs (lnbits ? extensionsMode) { mode = lnbits.extensionsMode; }
            // optionalAttrs (lnbits ? extensionsSource) { source = lnbits.extensionsSource; };
        };
    }
    (optionalAttrs (enabled "atbb") {
      # atBB brings its own vhost; the fleet's nginx settings (ACME email, fail2ban) cover it too.
      aiolabs.nginx.enable = lib.mkDefault true;
      # atBB's module is also its flake's nixosModules.default and knows nothing of
      # aiolabs.health: its units and vhost are declared here, from its own options.
      # atbb-migrate is a oneshot with RemainAfterExit, active once it ran (with autoMigrate).
      aiolabs.health = {
        units = [
          "atbb-appview.service"
          "atbb-web.service"
        ]
        ++ optional config.services.atbb.autoMigrate "atbb-migrate.service";
        vhosts = lib.mkIf config.services.atbb.enableNginx { ${config.services.atbb.domain} = { }; };
      };
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
