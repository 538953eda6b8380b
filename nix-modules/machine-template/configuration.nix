# Installed by the deploy as /var/src/config-machine/configuration.nix, beside
# the machine's data (machine.nix, rendered from host_vars with the to_nix
# filter). nixos-rebuild runs with NIX_PATH=/var/src, so <config-shared> is the
# pushed nix-modules/ folder. Nothing machine-specific is written here.
{ lib, ... }:
let
  machine = import ./machine.nix;
  # nixos-generate-config's output: beside this file if the deploy put it
  # there, else where the NixOS installer left it.
  hardware = lib.findFirst builtins.pathExists null [
    ./hardware-configuration.nix
    /etc/nixos/hardware-configuration.nix
  ];
in
{
  imports = [
    (import <config-shared/machine-services.nix> machine)
  ]
  ++ lib.optional (hardware != null) hardware
  # Machine-specific modules pushed beside this file (WireGuard, a boot loader when
  # boot_loader.type is assets, …).
  ++ lib.optional (builtins.pathExists ./boot.nix) ./boot.nix
  ++ map (name: ./. + "/${name}") (machine.extraModules or [ ]);

  assertions = [
    {
      assertion = hardware != null;
      message = ''
        ${machine.hostName}: no hardware-configuration.nix. Run nixos-generate-config on the machine
        (it writes /etc/nixos/hardware-configuration.nix), or deploy one beside configuration.nix.
      '';
    }
  ];
  # system.stateVersion, the boot loader, networking and root's SSH keys come from the
  # machine data (machine-services.nix); stateVersion has no default: it is never guessed.
}
