{
  description = "atBB — decentralized BB-style forum on AT Protocol";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";
  };

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      supportedSystems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = lib.genAttrs supportedSystems;
      pkgsFor = system: nixpkgs.legacyPackages.${system};
    in
    {
      # ── Public outputs ────────────────────────────────────────────
      packages = forAllSystems (system: {
        default = (pkgsFor system).callPackage ./nix/package.nix { };
      });

      # `self` lets the module default `services.atbb.package` to this flake's package.
      nixosModules.default = import ./nix/module.nix self;

      # ── Development outputs ───────────────────────────────────────
      # `nix flake check`: the package builds, and a minimal NixOS system using the
      # module evaluates (its assertions hold and its units are generated).
      checks = forAllSystems (system: {
        package = self.packages.${system}.default;
        module =
          (lib.nixosSystem {
            inherit system;
            modules = [
              self.nixosModules.default
              {
                boot.isContainer = true;
                system.stateVersion = "25.05";
                security.acme = {
                  acceptTerms = true;
                  defaults.email = "admin@forum.example.org";
                };
                services.atbb = {
                  enable = true;
                  domain = "forum.example.org";
                  forumDid = "did:plc:example";
                  pdsUrl = "https://pds.example.org";
                  environmentFile = "/run/secrets/atbb.env";
                };
              }
            ];
          }).config.system.build.toplevel;
      });

      formatter = forAllSystems (system: (pkgsFor system).nixfmt);
    };
}
