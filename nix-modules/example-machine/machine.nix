# The example machine's data. For real machines the deploy renders this file
# from inventory/host_vars/<machine>.yml; it is pure data (nix-instantiate --eval
# reads it too).
{
  hostName = "example-machine";
  domain = "example.org";
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
