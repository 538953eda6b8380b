# The example machine's entry point: the same as nix-modules/machine-template/
# configuration.nix (which the deploy installs for every machine), with its
# machine-specific modules listed explicitly. Copy this folder to start a
# machine by hand; with the deploy, add host_vars/<machine>.yml instead.
{ lib, ... }:
let
  machine = import ./machine.nix;
in
{
  imports = [
    (import <config-shared/machine-services.nix> machine)
    ./boot.nix
    ./example-service.nix
  ]
  # Generated on the machine by nixos-generate-config.
  ++ lib.optional (builtins.pathExists ./hardware-configuration.nix) ./hardware-configuration.nix;
  # system.stateVersion, networking and root's keys come from machine.nix.
}
