# LAB (test infrastructure, not NixOS): `<nixpkgs/nixos>` of the lab's nixpkgs, as nixpkgs'
# nixos/default.nix: the configuration is NIXOS_CONFIG if set, else <nixos-config>, so
#   nix-build '<nixpkgs/nixos>' -A config.system.build.toplevel
# builds a lab NixOS system exactly as nixos-rebuild's classic build does.
{
  configuration ?
    let
      fromEnv = builtins.getEnv "NIXOS_CONFIG";
    in
    if fromEnv == "" then <nixos-config> else fromEnv,
  system ? builtins.currentSystem,
}:
let
  eval = import ./lib/eval-config.nix {
    inherit system;
    modules = [ configuration ];
  };
in
{
  inherit (eval) pkgs config options;
  system = eval.config.system.build.toplevel;
}
