# Boot loader of the example machine. Pick the block that matches the machine.
{ lib, ... }:
{
  # UEFI machines:
  boot.loader.systemd-boot.enable = true;
  boot.loader.efi.canTouchEfiVariables = true;
  boot.loader.grub.enable = lib.mkDefault false;

  # BIOS machines (e.g. most VPS): instead of the above,
  # boot.loader.grub.enable = true;
  # boot.loader.grub.device = "/dev/sda";
}
