# LAB (test infrastructure, not nixpkgs): the lab's stand-in nixpkgs as a flake (no inputs), for
# flake-mode configurations: inputs.nixpkgs.url = "path:/var/src/nixpkgs" (or the host's channel),
# nixosConfigurations.NAME = nixpkgs.lib.nixosSystem { system; modules; }.
# Pure evaluation cannot read NIXPKGS_LIB or /opt/lab: lib is minilib here (see lib/default.nix).
{
  description = "LAB stand-in nixpkgs (test infrastructure, not nixpkgs)";
  outputs =
    { self }:
    let
      lib = import ./lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: builtins.listToAttrs (map (system: { name = system; value = f system; }) systems);
    in
    {
      lib = lib // {
        nixosSystem =
          args:
          import ./nixos/lib/eval-config.nix (
            {
              inherit lib;
              system = args.system or null;
            }
            // removeAttrs args [ "system" ]
          );
      };
      legacyPackages = forAllSystems (system: import ./pkgs { inherit system lib; });
      nixosModules.notDetected = ./nixos/modules/installer/scan/not-detected.nix;
    };
}
