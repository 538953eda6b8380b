# machine1's hardware-configuration.nix, as nixos-generate-config would write it for a
# lab container (the lab has no real hardware). Deployed beside configuration.nix, so it
# wins over the machine's /etc/nixos/hardware-configuration.nix.
{ lib, ... }:
{
  boot.isContainer = true;
  nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";
}
