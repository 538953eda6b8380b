# LAB (test infrastructure, not NixOS): imported by nixos-generate-config's
# hardware-configuration.nix for hardware it did not recognise (as in nixpkgs).
{ config, lib, ... }:
{
  hardware.enableRedistributableFirmware = lib.mkDefault true;
}
