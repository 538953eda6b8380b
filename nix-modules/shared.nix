# Imported by every machine with its domain (and the fleet's ACME email):
#   imports = [ (import <config-shared/shared.nix> { domain = "machine1.example.org"; }) ];
# Brings in every aiolabs module; each service stays off until the machine enables it.
{
  domain,
  acmeEmail ? null,
}:
{ lib, pkgs, ... }:
{
  imports = [
    ./common.nix
    ./nginx.nix
    ./lnbits.nix
    ./pict-rs.nix
    ./web-app.nix
  ];

  aiolabs.domain = domain;
  aiolabs.nginx.acmeEmail = acmeEmail;

  services.openssh = {
    enable = lib.mkDefault true;
    settings.PasswordAuthentication = lib.mkDefault false;
  };
  time.timeZone = lib.mkDefault "UTC";

  # The deploy pushes /var/src with rsync (ansible.posix.synchronize), which
  # needs rsync on the target too.
  environment.systemPackages = [ pkgs.rsync ];
}
