# LAB (test infrastructure, not NixOS): the lab's NixOS modules (as nixpkgs' module-list.nix).
# Only these options exist in the lab; any other is "does not exist", as on NixOS for an option
# NixOS lacks. installer/scan/not-detected.nix and profiles/* are imported by path, not listed.
[
  ./config/locale.nix
  ./config/networking.nix
  ./config/nix.nix
  ./config/system-path.nix
  ./config/users-groups.nix
  ./hardware/hardware.nix
  ./misc/assertions.nix
  ./misc/documentation.nix
  ./misc/nixpkgs.nix
  ./misc/version.nix
  ./security/acme.nix
  ./services/databases/postgresql.nix
  ./services/networking/ssh/sshd.nix
  ./services/security/fail2ban.nix
  ./services/web-apps/pict-rs.nix
  ./services/web-servers/nginx.nix
  ./system/activation/top-level.nix
  ./system/boot/loader.nix
  ./system/boot/systemd.nix
  ./system/etc/etc.nix
]
