# TEST HARNESS, not nixpkgs: a stand-in `pkgs` for evaluating the aiolabs
# modules without nixpkgs. Packages are derivation-like attribute sets (type,
# name, outPath, meta) with fixed, fake /nix/store paths; nothing is built.
# `stdenv.mkDerivation`, `fetchPnpmDeps` and `callPackage` record their
# arguments so tests can read what nix/package.nix asks for.
{ lib }:
let
  storePath = name: "${builtins.storeDir}/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
  drv =
    name: attrs:
    {
      type = "derivation";
      inherit name;
      outPath = storePath name;
      drvPath = storePath "${name}.drv";
      meta = { };
    }
    // attrs;
  program = name: mainProgram: drv name { meta = { inherit mainProgram; }; };

  pkgs = {
    system = "x86_64-linux";
    stdenv = {
      hostPlatform.system = "x86_64-linux";
      mkDerivation =
        fOrAttrs:
        let
          attrs = if builtins.isFunction fOrAttrs then fOrAttrs final else fOrAttrs;
          final = attrs // drv "${attrs.pname}-${attrs.version}" { inherit (attrs) pname version; meta = attrs.meta or { }; };
        in
        final;
    };
    fetchPnpmDeps =
      args:
      drv "${args.pname}-pnpm-deps" {
        inherit (args) hash;
        fetcherVersion = args.fetcherVersion or null;
        pnpm = args.pnpm or null;
      };
    callPackage =
      fn: overrides:
      let
        f = if builtins.isFunction fn then fn else import fn;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) (pkgs // { inherit lib; }) // overrides);

    bash = program "bash-5.2" "bash";
    coreutils = drv "coreutils-9.5" { };
    rsync = program "rsync-3.3.0" "rsync";
    nodejs_22 = program "nodejs-22.12.0" "node";
    pnpm_9 = program "pnpm-9.15.0" "pnpm";
    pnpmConfigHook = drv "pnpm-config-hook" { };
    postgresql_16 = program "postgresql-16.6" "postgres";
    postgresql_17 = program "postgresql-17.2" "postgres";
    pict-rs = program "pict-rs-0.5.16" "pict-rs";
    wireguard-tools = program "wireguard-tools-1.0.20210914" "wg";
  };
in
pkgs
