# A qcow2 disk of configuration.nix, built with nixpkgs' own make-disk-image (legacy MBR
# partition table, GRUB on /dev/vda, the nixos channel copied in):
#   nix-build molecule/nixos-vm/image.nix --argstr url URL --argstr sha256 HASH
# with the pinned nixpkgs of create.yml. Impure on purpose: configuration.nix reads root's key
# from AIOLABS_VM_ROOT_KEY_FILE.
{ url, sha256 }:
let
  nixpkgs = builtins.fetchTarball { inherit url sha256; };
  system = import (nixpkgs + "/nixos/lib/eval-config.nix") {
    system = "x86_64-linux";
    modules = [ ./configuration.nix ];
  };
in
import (nixpkgs + "/nixos/lib/make-disk-image.nix") {
  inherit (system) config pkgs;
  inherit (system.pkgs) lib;
  format = "qcow2";
  partitionTableType = "legacy";
  diskSize = 8192;
  copyChannel = true;
}
