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
    ./health.nix
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

  environment.systemPackages = [
    # The deploy pushes /var/src with rsync (ansible.posix.synchronize), which
    # needs rsync on the target too.
    pkgs.rsync
    # NixOS ships no Python, and Ansible's modules need one on the target: without
    # it in the system, every task after the first switch (the confirm, a rollback)
    # fails. The inventory points at /run/current-system/sw/bin/python3.
    pkgs.python3
  ];

  # machine-services.nix and lnbits.nix read flakes with builtins.getFlake, which
  # Nix refuses unless these are enabled. Set here (not mkDefault: a host's own
  # list merges with this one) so the switch after this one evaluates too; the
  # first deploy passes them on the nixos-rebuild command line itself.
  nix.settings.experimental-features = [
    "nix-command"
    "flakes"
  ];
}
