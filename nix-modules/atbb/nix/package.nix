# The atBB pnpm monorepo (apps/appview, apps/web, packages/*) built into one
# output with its runtime node_modules. These files sit at the root of an atBB
# checkout (flake.nix beside package.json, this file in nix/).
{
  lib,
  stdenv,
  nodejs_22,
  pnpm_9,
  fetchPnpmDeps,
  pnpmConfigHook,
  bash,
}:

stdenv.mkDerivation (finalAttrs: {
  pname = "atbb";
  version = "0.1.0";

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../package.json
      ../pnpm-lock.yaml
      ../pnpm-workspace.yaml
      ../turbo.json
      ../tsconfig.base.json
      ../apps
      ../packages
    ];
  };

  # The fixed-output derivation holding the pnpm store for pnpm-lock.yaml.
  #
  # The seed plan wrote this as `pnpm_9.fetchDeps { … }` with `pnpm_9.configHook`
  # in nativeBuildInputs. nixpkgs moved both to top-level attributes:
  #   pnpm_9.fetchDeps  -> fetchPnpmDeps { pnpm = pnpm_9; fetcherVersion = 3; … }
  #   pnpm_9.configHook -> pnpmConfigHook, with pnpm_9 itself in nativeBuildInputs
  # fetcherVersion 3 stores the deps as a reproducible tarball; changing it changes
  # the hash. The hash is kept in step with pnpm-lock.yaml by
  # aiolabs.nixos.pnpm_deps_hash (builds only this FOD, rewrites only this line).
  pnpmDeps = fetchPnpmDeps {
    inherit (finalAttrs) pname version src;
    pnpm = pnpm_9;
    fetcherVersion = 3;
    hash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  };

  nativeBuildInputs = [
    nodejs_22
    pnpm_9
    pnpmConfigHook
    # The lexicon build runs `bash -c 'shopt -s globstar && …'`.
    bash
  ];

  buildPhase = ''
    runHook preBuild
    pnpm build
    runHook postBuild
  '';

  installPhase = ''
    runHook preInstall

    mkdir -p $out
    cp package.json pnpm-lock.yaml pnpm-workspace.yaml $out/
    # Root node_modules: pnpm's virtual store; its symlinks stay inside $out.
    cp -r node_modules $out/

    for pkg in apps/appview apps/web packages/db packages/atproto packages/cli packages/lexicon; do
      mkdir -p "$out/$pkg"
      cp "$pkg/package.json" "$out/$pkg/"
      if [ -d "$pkg/dist" ]; then cp -r "$pkg/dist" "$out/$pkg/"; fi
      if [ -d "$pkg/node_modules" ]; then cp -r "$pkg/node_modules" "$out/$pkg/"; fi
    done

    # Drizzle migrations and config, for atbb-migrate (drizzle-kit migrate).
    cp -r apps/appview/drizzle apps/appview/drizzle.config.ts $out/apps/appview/
    # drizzle.config.ts points at ../../packages/db/src/schema.ts.
    mkdir -p $out/packages/db/src
    cp -r packages/db/src/. $out/packages/db/src/
    # Static assets served by the web app (hono serveStatic).
    cp -r apps/web/public $out/apps/web/

    runHook postInstall
  '';

  meta = {
    description = "atBB — decentralized BB-style forum on AT Protocol";
    license = lib.licenses.agpl3Only;
    platforms = [
      "x86_64-linux"
      "aarch64-linux"
    ];
  };
})
