# The NixOS VM of the molecule nixos-vm scenario before the deploy: what a fresh install of a
# small server has (sshd with root's key, Python and rsync for Ansible, the nixos channel of the
# pinned nixpkgs), on a qcow2 disk with GRUB (image.nix). The deploy then replaces it with the
# machine's configuration from the scenario's inventory (boot loader, file systems and the
# virtio drivers from inventory/files/nixos-vm/hardware-configuration.nix, the same as here).
# Root's public key: the file named by AIOLABS_VM_ROOT_KEY_FILE (create.yml makes the key).
{ lib, pkgs, modulesPath, ... }:
let
  keyFile = builtins.getEnv "AIOLABS_VM_ROOT_KEY_FILE";
in
{
  imports = [
    ./inventory/files/nixos-vm/hardware-configuration.nix
    (modulesPath + "/profiles/qemu-guest.nix")
  ];

  assertions = [
    {
      assertion = keyFile != "";
      message = "set AIOLABS_VM_ROOT_KEY_FILE to root's public key file (molecule/nixos-vm/create.yml does)";
    }
  ];

  # make-disk-image installs GRUB on the image's disk (the VM's /dev/vda), as host_vars say.
  boot.loader.grub.device = "/dev/vda";
  networking.hostName = "nixos-vm";
  networking.useDHCP = lib.mkDefault true;
  services.openssh = {
    enable = true;
    settings.PermitRootLogin = "prohibit-password";
  };
  users.users.root.openssh.authorizedKeys.keys = lib.optional (keyFile != "") (builtins.readFile keyFile);
  environment.systemPackages = [
    pkgs.python3
    pkgs.rsync
  ];
  system.stateVersion = "24.11";
}
