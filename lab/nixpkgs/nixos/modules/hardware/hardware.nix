# LAB (test infrastructure, not NixOS): the hardware.* options nixos-generate-config writes
# (nixos/modules/hardware/cpu/*-microcode.nix, all-firmware.nix); no effect in the lab.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  bool =
    default: description:
    mkOption {
      type = types.bool;
      inherit default description;
    };
in
{
  options.hardware = {
    enableAllFirmware = bool false "Turn on this option if you want to enable all the firmware.";
    enableRedistributableFirmware = bool config.hardware.enableAllFirmware "Turn on this option if you want to enable all the firmware with a license allowing redistribution.";
    cpu.intel.updateMicrocode = bool false "Update the CPU microcode for Intel processors.";
    cpu.amd.updateMicrocode = bool false "Update the CPU microcode for AMD processors.";
    graphics.enable = bool false "Whether to enable hardware accelerated graphics drivers.";
  };
}
