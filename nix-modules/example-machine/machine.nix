# The example machine's data. For real machines the deploy renders this file
# from inventory/host_vars/<machine>.yml; it is pure data (nix-instantiate --eval
# reads it too).
{
  hostName = "example-machine";
  domain = "example.org";
  # The release the machine was installed with (its old configuration.nix's value).
  stateVersion = "25.05";
  # boot_loader: {type: assets}: boot.nix beside this file sets the boot loader.
  bootLoader = {
    type = "assets";
    settings = { };
  };
  # networking: {type: static, interfaces: {ens3: {ipv4: [203.0.113.10/24]}}, ...}
  networking = {
    type = "static";
    settings = {
      useDHCP = false;
      interfaces.ens3.ipv4.addresses = [
        {
          address = "203.0.113.10";
          prefixLength = 24;
        }
      ];
      defaultGateway = {
        address = "203.0.113.1";
      };
      nameservers = [ "9.9.9.9" ];
    };
  };
  rootAccess = "keys";
  # Root's public keys (root_authorized_keys / the fleet's aiolabs_nixos_root_authorized_keys).
  rootAuthorizedKeys = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f ops@example.org"
  ];
  acmeEmail = "admin@example.org";
  extraModules = [ "example-service.nix" ];
  services = {
    webapp = {
      enable = true;
    };
    lnbits = {
      enable = true;
      port = 5000;
      extensionsMode = "symlink";
    };
    pictrs = {
      enable = false;
      port = 8080;
    };
    atbb = {
      enable = false;
      domain = "forum.example.org";
      forumDid = "did:plc:replace-me";
      pdsUrl = "https://pds.example.org";
      appviewPort = 3000;
      webPort = 3001;
    };
  };
}
