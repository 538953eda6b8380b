# LAB (test infrastructure, not NixOS): as nixpkgs' profiles/minimal.nix, no default packages
# (so no rsync unless the configuration adds it) and no documentation.
{ lib, ... }:
{
  environment.defaultPackages = lib.mkDefault [ ];
  documentation.enable = lib.mkDefault false;
  documentation.nixos.enable = lib.mkDefault false;
}
