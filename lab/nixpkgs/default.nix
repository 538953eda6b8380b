# LAB (test infrastructure, not nixpkgs): the lab's stand-in nixpkgs tree, shaped like nixpkgs so
# that `<nixpkgs>`, `<nixpkgs/lib>` and `<nixpkgs/nixos>` work on a lab host as on NixOS:
#   nix-build '<nixpkgs>' -A python3                        lab packages (pkgs/)
#   nix-build '<nixpkgs/nixos>' -A config.system.build.toplevel   a lab NixOS system (nixos/)
# `config` and `overlays` are accepted like nixpkgs' and ignored; see README.md.
{
  system ? builtins.currentSystem,
  config ? { },
  overlays ? [ ],
  ...
}:
import ./pkgs { inherit system; }
