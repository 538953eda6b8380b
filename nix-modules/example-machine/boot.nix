# Boot loader of the example machine (its machine data says boot_loader: {type: assets},
# so this module is the one that sets it). Pick the block that matches the machine, or
# drop this file and declare it in host_vars (boot_loader: {type: systemd-boot}).
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
