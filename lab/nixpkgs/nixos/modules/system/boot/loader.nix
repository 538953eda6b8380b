# LAB (test infrastructure, not NixOS): boot.*, fileSystems and swapDevices with NixOS's names,
# types and defaults (nixos/modules/system/boot/loader/{grub,systemd-boot,efi}, kernel.nix,
# stage-1.nix, tasks/filesystems.nix, config/swap.nix) and the assertions NixOS makes about them
# (a boot loader that can be installed, a root file system). A lab host has no kernel or boot
# loader: the kernel and initrd in the toplevel are lab stand-ins (see pkgs: linux).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  opt =
    type: default: description:
    mkOption { inherit type default description; };
  strs = opt (types.listOf types.str) [ ];
  cfg = config.boot;
  grub = cfg.loader.grub;
  sdboot = cfg.loader.systemd-boot;

  fileSystemModule =
    { name, config, ... }:
    {
      options = {
        mountPoint = opt types.str name "Location of the mounted file system.";
        device = opt (types.nullOr types.str) null "Location of the device.";
        label = opt (types.nullOr types.str) null "Label of the device (if any).";
        fsType = opt types.str "auto" "Type of the file system.";
        options = opt (types.listOf types.nonEmptyStr) [ "defaults" ] "Options used to mount the file system.";
        depends = strs "List of paths that should be mounted before this one.";
        neededForBoot = opt types.bool false "If set, this file system will be mounted in the initial ramdisk.";
        noCheck = opt types.bool false "Disable running fsck on this filesystem.";
        autoFormat = opt types.bool false "If the device does not currently contain a filesystem, format it.";
        autoResize = opt types.bool false "If set, the filesystem is grown to its maximum size before being mounted.";
      };
    };
  swapModule = {
    options = {
      device = mkOption {
        type = types.str;
        description = "Path of the device or swap file.";
      };
      label = opt (types.nullOr types.str) null "Label of the device.";
      size = opt (types.nullOr types.int) null "If this option is set, ‘device’ is interpreted as the path of a swapfile that will be created automatically with the indicated size in MiB.";
      priority = opt (types.nullOr types.int) null "Specify the priority of the swap device.";
      randomEncryption.enable = opt types.bool false "Encrypt swap device with a random key.";
      discardPolicy = opt (types.nullOr (types.enum [ "once" "pages" "both" ])) null "Specify the discard policy for the swap device.";
      options = opt (types.listOf types.nonEmptyStr) [ "defaults" ] "Options used to mount the swap.";
    };
  };
  mirroredBootModule = {
    options = {
      path = mkOption {
        type = types.str;
        description = "The path to the boot directory where GRUB will be written.";
      };
      devices = strs "The path to the devices which will have the GRUB MBR written.";
      efiSysMountPoint = opt (types.nullOr types.str) null "The path to the efi system mount point.";
    };
  };
  grubDevices = lib.optional (grub.device != "") grub.device ++ grub.devices;
in
{
  options = {
    boot = {
      isContainer = opt types.bool false "Whether this NixOS machine is a lightweight container running in another NixOS system.";
      kernelPackages = opt types.unspecified pkgs.linuxPackages "This option allows you to override the Linux kernel used by NixOS.";
      kernelParams = strs "Parameters added to the kernel command line.";
      consoleLogLevel = opt types.int 4 "The kernel console `loglevel`.";
      kernelModules = strs "The set of kernel modules to be loaded in the second stage of the boot process.";
      extraModulePackages = opt (types.listOf types.package) [ ] "A list of additional packages supplying kernel modules.";
      blacklistedKernelModules = strs "List of names of kernel modules that should not be loaded automatically.";
      kernel.sysctl = opt (types.attrsOf types.anything) { } "Runtime parameters of the Linux kernel, as set by sysctl(8).";
      supportedFilesystems = opt (types.either (types.listOf types.str) (types.attrsOf types.bool)) [ ] "Names of supported filesystem types.";
      tmp.cleanOnBoot = opt types.bool false "Whether to delete all files in {file}`/tmp` during boot.";
      tmp.useTmpfs = opt types.bool false "Whether to mount a tmpfs on {file}`/tmp` during boot.";
      initrd = {
        enable = opt types.bool (!cfg.isContainer) "Whether to enable the NixOS initial RAM disk (initrd).";
        availableKernelModules = strs "The set of kernel modules in the initial ramdisk used during the boot process.";
        kernelModules = strs "List of modules that are always loaded by the initrd.";
        luks.devices = opt (types.attrsOf types.anything) { } "The encrypted disk that should be opened before the root filesystem is mounted.";
        systemd.enable = opt types.bool false "Whether to enable systemd in initrd.";
        network.enable = opt types.bool false "Whether to enable network support in the initrd.";
        network.ssh.enable = opt types.bool false "Start SSH service during initrd boot.";
        supportedFilesystems = opt (types.either (types.listOf types.str) (types.attrsOf types.bool)) [ ] "Names of supported filesystem types in the initial ramdisk.";
      };
      loader = {
        timeout = opt (types.nullOr types.int) 5 "Timeout (in seconds) until loader boots the default menu item.";
        grub = {
          enable = opt types.bool (!cfg.isContainer) "Whether to enable the GNU GRUB boot loader.";
          device = opt types.str "" "The device on which the GRUB boot loader will be installed (\"nodev\": none, for EFI only).";
          devices = strs "The devices on which the boot loader, GRUB, will be installed.";
          mirroredBoots = opt (types.listOf (types.submodule mirroredBootModule)) [ ] "Mirror the boot configuration to multiple partitions and install grub to the respective devices corresponding to those partitions.";
          efiSupport = opt types.bool false "Whether GRUB should be built with EFI support.";
          efiInstallAsRemovable = opt types.bool false "Whether or not to install GRUB EFI to the removable media path.";
          useOSProber = opt types.bool false "If set to true, append entries for other OSs detected by os-prober.";
          configurationLimit = opt types.int 100 "Maximum of configurations in boot menu.";
          extraEntries = opt types.lines "" "Any additional entries you want added to the GRUB boot menu.";
        };
        systemd-boot = {
          enable = opt types.bool false "Whether to enable the systemd-boot (formerly gummiboot) EFI boot manager.";
          sortKey = opt types.str "nixos" "The sort key used for the NixOS bootloader entries.";
          graceful = opt types.bool false "Invoke `bootctl install` with the `--graceful` option.";
          configurationLimit = opt (types.nullOr types.int) null "Maximum number of latest generations in the boot menu.";
          editor = opt types.bool true "Whether to allow editing the kernel command-line before boot.";
          consoleMode = opt (types.enum [ "0" "1" "2" "5" "auto" "max" "keep" ]) "keep" "The resolution of the console.";
        };
        efi = {
          canTouchEfiVariables = opt types.bool false "Whether the installation process is allowed to modify EFI boot variables.";
          efiSysMountPoint = opt types.str "/boot" "Where the EFI System Partition is mounted.";
        };
        generic-extlinux-compatible.enable = opt types.bool false "Whether to generate an extlinux-compatible configuration file.";
      };
    };
    system.lab.bootLoader = mkOption {
      type = types.attrsOf types.anything;
      internal = true;
      description = "LAB: the boot loader switch-to-configuration installs (`id`: systemd-boot, grub or none) and its settings.";
    };
    fileSystems = opt (types.attrsOf (types.submodule fileSystemModule)) { } "The file systems to be mounted.";
    swapDevices = opt (types.listOf (types.submodule swapModule)) [ ] "The swap devices and swap files.";
  };

  config = {
    # nixos/modules/system/boot/loader/systemd-boot/systemd-boot.nix: systemd-boot replaces GRUB
    # (mkDefault, so a configuration can still say otherwise), and its settings reach the builder.
    # LAB: the builder is lab/host/nixos/sdboot.py, run by switch-to-configuration; it reads
    # system.lab.bootLoader from the system's etc/lab/system.json (NixOS bakes them into the
    # builder script, system.build.installBootLoader).
    boot.loader.grub.enable = lib.mkIf sdboot.enable (lib.mkDefault false);
    system.lab.bootLoader =
      if sdboot.enable then
        {
          id = "systemd-boot";
          inherit (cfg.loader) timeout;
          inherit (sdboot) editor consoleMode configurationLimit sortKey graceful;
          inherit (cfg.loader.efi) canTouchEfiVariables efiSysMountPoint;
        }
      else if grub.enable then
        { id = "grub"; }
      else
        { id = "none"; };
    # nixos/modules/system/boot/kernel.nix
    boot.kernelParams = [ "loglevel=${toString cfg.consoleLogLevel}" ];
    boot.loader.grub.mirroredBoots = lib.optional (grubDevices != [ ]) {
      path = "/boot";
      devices = grubDevices;
    };
    assertions = [
      {
        # nixos/modules/system/boot/loader/grub/grub.nix
        assertion = !grub.enable || grub.mirroredBoots != [ ];
        message = "You must set the option ‘boot.loader.grub.devices’ or 'boot.loader.grub.mirroredBoots' to make the system bootable.";
      }
      {
        # nixos/modules/system/boot/loader/systemd-boot/systemd-boot.nix
        assertion = !sdboot.enable || lib.hasPrefix "/" cfg.loader.efi.efiSysMountPoint;
        message = "The ESP mount point '${toString cfg.loader.efi.efiSysMountPoint}' must be an absolute path";
      }
      {
        # nixos/modules/system/boot/stage-1.nix
        assertion = !cfg.initrd.enable || builtins.any (fs: fs.mountPoint == "/") (builtins.attrValues config.fileSystems);
        message = "The ‘fileSystems’ option does not specify your root file system.";
      }
    ];
  };
}
