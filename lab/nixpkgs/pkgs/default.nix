# LAB (test infrastructure, not nixpkgs): the package set of the lab's stand-in nixpkgs.
#
# No nixpkgs can be fetched or built where the lab runs, so every package here is a real
# derivation built with builder /bin/sh and PATH=/usr/bin:/bin (the lab host's Debian tools).
# Programs the lab host keeps out of PATH are wrappers around them:
#   python3 -> /usr/lib/lab/bin/python3    rsync -> /usr/lib/lab/bin/rsync
#   systemd (systemctl, systemd-run, journalctl, shutdown, reboot, poweroff, halt, bootctl) -> /opt/lab/bin/…
#   nixos-rebuild -> /opt/lab/bin/nixos-rebuild
# so Python, rsync and the systemd tools exist on a lab host only when its system has them
# (/run/current-system/sw/bin). Service packages (pict-rs, nginx's stand-in) run lab-httpd.
{
  system ? builtins.currentSystem,
  lib ? import ../lib,
}:
let
  inherit (builtins)
    attrNames
    concatStringsSep
    isList
    toJSON
    ;

  hostPath = "/usr/bin:/bin";
  labBin = "/opt/lab/bin";
  hiddenBin = "/usr/lib/lab/bin";

  shellQuote = s: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString s)}'";

  # ── build support ────────────────────────────────────────────────────
  runCommand =
    name: env: buildCommand:
    builtins.derivation (
      removeAttrs env [ "passthru" "meta" ]
      // {
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-c"
          ''
            set -eu
            ${buildCommand}
          ''
        ];
        PATH = hostPath;
      }
    )
    // (env.passthru or { })
    // {
      meta = env.meta or { };
    };

  writeTextFile =
    {
      name,
      text,
      executable ? false,
      destination ? "",
      checkPhase ? "",
      meta ? { },
      ...
    }:
    runCommand name
      {
        inherit text executable destination meta;
        passAsFile = [ "text" ];
      }
      ''
        target="$out$destination"
        mkdir -p "$(dirname "$target")"
        cp "$textPath" "$target"
        if [ -n "$executable" ]; then chmod +x "$target"; fi
        ${checkPhase}
      '';

  writeText = name: text: writeTextFile { inherit name text; };
  writeScript =
    name: text:
    writeTextFile {
      inherit name text;
      executable = true;
    };
  writeScriptBin =
    name: text:
    writeTextFile {
      inherit name text;
      executable = true;
      destination = "/bin/${name}";
      meta.mainProgram = name;
    };
  writeShellScript =
    name: text:
    writeScript name ''
      #!${runtimeShell}
      ${text}
    '';
  writeShellScriptBin =
    name: text:
    writeScriptBin name ''
      #!${runtimeShell}
      ${text}
    '';
  writeShellApplication =
    {
      name,
      text,
      runtimeInputs ? [ ],
      ...
    }:
    writeShellScriptBin name ''
      set -o errexit -o nounset -o pipefail
      ${lib.optionalString (runtimeInputs != [ ]) "export PATH=${makeBinPath runtimeInputs}:$PATH"}
      ${text}
    '';

  makeBinPath = paths: concatStringsSep ":" (map (p: "${p}/bin") paths);

  # Links to every file under the given paths' bin/ (and other pathsToLink), as buildEnv does.
  buildEnv =
    {
      name,
      paths,
      pathsToLink ? [ "/" ],
      ignoreCollisions ? false,
      ...
    }:
    runCommand name
      {
        inherit paths;
        pathsToLink = pathsToLink;
        collisions = if ignoreCollisions then "ignore" else "fail";
      }
      ''
        mkdir -p "$out"
        for p in $paths; do
          for top in $pathsToLink; do
            [ -d "$p$top" ] || continue
            (cd "$p$top" && find . \( -type f -o -type l \) -print) | while read -r rel; do
              dest="$out$top/''${rel#./}"
              if [ -e "$dest" ] || [ -L "$dest" ]; then
                if [ "$collisions" = fail ] && [ "$(readlink -f "$dest")" != "$(readlink -f "$p$top/$rel")" ]; then
                  echo "collision between $(readlink "$dest") and $p$top/''${rel#./}" >&2
                  exit 1
                fi
                continue
              fi
              mkdir -p "$(dirname "$dest")"
              ln -s "$p$top/''${rel#./}" "$dest"
            done
          done
        done
      '';
  symlinkJoin =
    { name, paths, ... }:
    buildEnv {
      inherit name paths;
      ignoreCollisions = true;
    };

  # A minimal stdenv.mkDerivation: buildCommand, or buildPhase + installPhase, under /bin/sh.
  mkDerivation =
    fOrAttrs:
    let
      attrs = if builtins.isFunction fOrAttrs then fOrAttrs final else fOrAttrs;
      name = attrs.name or "${attrs.pname}-${attrs.version}";
      script =
        attrs.buildCommand or ''
          if [ -n "''${src-}" ]; then cp -r "$src"/. . && chmod -R u+w .; fi
          ${attrs.buildPhase or ""}
          ${attrs.installPhase or "mkdir -p $out"}
        '';
      env = removeAttrs attrs [
        "nativeBuildInputs"
        "buildInputs"
        "passthru"
        "meta"
        "buildCommand"
        "buildPhase"
        "installPhase"
      ];
      drv = runCommand name (env // { meta = attrs.meta or { }; passthru = attrs.passthru or { }; }) script;
      final = attrs // drv;
    in
    final;

  # ── host tools behind wrappers ───────────────────────────────────────
  # A package whose bin/NAME are links to programs the lab host keeps outside PATH.
  hostTools =
    {
      pname,
      version ? "lab",
      links,
      mainProgram ? null,
    }:
    runCommand "${pname}-${version}"
      {
        linkNames = attrNames links;
        linkTargets = map (n: links.${n}) (attrNames links);
        meta = lib.optionalAttrs (mainProgram != null) { inherit mainProgram; };
        passthru = { inherit pname version; };
      }
      ''
        mkdir -p "$out/bin"
        set -- $linkTargets
        for n in $linkNames; do
          ln -s "$1" "$out/bin/$n"
          shift
        done
      '';

  # A stand-in program that only says it is one (for packages the lab cannot run).
  unavailable =
    pname: programs:
    runCommand "${pname}-lab"
      {
        inherit programs;
        meta.mainProgram = builtins.head programs;
        passthru.pname = pname;
      }
      ''
        mkdir -p "$out/bin"
        for p in $programs; do
          printf '#!/bin/sh\necho "%s: lab stand-in: %s is not available in the lab" >&2\nexit 127\n' "$p" "${pname}" > "$out/bin/$p"
          chmod +x "$out/bin/$p"
        done
      '';

  debianTools =
    pname: programs:
    hostTools {
      inherit pname;
      links = lib.genAttrs programs (p: "/usr/bin/${p}");
      mainProgram = builtins.head programs;
    };

  bash = hostTools {
    pname = "bash";
    version = "5.2-lab";
    links = {
      bash = "/bin/bash";
      sh = "/bin/sh";
    };
    mainProgram = "bash";
  };
  runtimeShell = "${bash}/bin/bash";

  python3 = hostTools {
    pname = "python3";
    version = "3-lab";
    links = {
      python3 = "${hiddenBin}/python3";
      python = "${hiddenBin}/python3";
    };
    mainProgram = "python3";
  };

  # lab-httpd as a service program: `lab-service NAME` listens where its caller says.
  labHttpd = "${labBin}/lab-httpd";

  pkgs = {
    inherit
      system
      lib
      runCommand
      writeTextFile
      writeText
      writeScript
      writeScriptBin
      writeShellScript
      writeShellScriptBin
      writeShellApplication
      buildEnv
      symlinkJoin
      makeBinPath
      runtimeShell
      bash
      python3
      ;
    # What NixOS modules and package files read from stdenv.
    stdenv = {
      inherit mkDerivation;
      shell = runtimeShell;
      hostPlatform = {
        inherit system;
        isLinux = true;
      };
      buildPlatform = pkgs.stdenv.hostPlatform;
    };
    runCommandLocal = runCommand;
    callPackage =
      fn: overrides:
      let
        f = if builtins.isFunction fn then fn else import fn;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // overrides);

    bashInteractive = bash;
    python3Minimal = python3;
    python312 = python3;
    rsync = hostTools {
      pname = "rsync";
      version = "3-lab";
      links.rsync = "${hiddenBin}/rsync";
      mainProgram = "rsync";
    };
    systemd = hostTools {
      pname = "systemd";
      version = "257-lab";
      links = lib.genAttrs [
        "systemctl"
        "systemd-run"
        "journalctl"
        "shutdown"
        "reboot"
        "poweroff"
        "halt"
        "bootctl"
      ] (p: "${labBin}/${p}");
      mainProgram = "systemctl";
    };
    nixos-rebuild = hostTools {
      pname = "nixos-rebuild";
      links.nixos-rebuild = "${labBin}/nixos-rebuild";
      mainProgram = "nixos-rebuild";
    };
    # Debian's nix-bin on the lab host.
    nix = debianTools "nix" [
      "nix"
      "nix-build"
      "nix-channel"
      "nix-collect-garbage"
      "nix-env"
      "nix-instantiate"
      "nix-shell"
      "nix-store"
    ];
    # NixOS units get coreutils on PATH: the programs of it that units and the lab's stand-ins use
    # (the node stand-in reads its script with head).
    coreutils = debianTools "coreutils" [
      "cat"
      "cp"
      "ls"
      "mkdir"
      "mv"
      "rm"
      "ln"
      "chmod"
      "chown"
      "env"
      "tar"
      "basename"
      "cut"
      "date"
      "dirname"
      "echo"
      "false"
      "head"
      "id"
      "mktemp"
      "printf"
      "readlink"
      "realpath"
      "rmdir"
      "sha256sum"
      "sleep"
      "sort"
      "stat"
      "tail"
      "tee"
      "test"
      "touch"
      "tr"
      "true"
      "uname"
      "uniq"
      "wc"
    ];
    findutils = debianTools "findutils" [
      "find"
      "xargs"
    ];
    gnugrep = debianTools "gnugrep" [ "grep" ];
    gnused = debianTools "gnused" [ "sed" ];
    gnutar = debianTools "gnutar" [ "tar" ];
    gzip = debianTools "gzip" [ "gzip" ];
    curl = debianTools "curl" [ "curl" ];
    procps = debianTools "procps" [ "ps" ];
    perl = debianTools "perl" [ "perl" ];
    openssh = debianTools "openssh" [
      "ssh"
      "ssh-keygen"
    ];
    strace = unavailable "strace" [ "strace" ];
    git = unavailable "git" [ "git" ];
    wireguard-tools = unavailable "wireguard-tools" [ "wg" ];
    postgresql_16 = unavailable "postgresql" [ "postgres" ];
    postgresql_17 = unavailable "postgresql" [ "postgres" ];
    postgresql = pkgs.postgresql_17;
    fail2ban = unavailable "fail2ban" [ "fail2ban-client" ];

    # The lab's kernel: a stand-in file (lab hosts run the machine's kernel). LAB_KERNEL_VERSION
    # (the lab's kernel-change knob) gives systems another kernel, as a kernel update would.
    linux =
      let
        fromEnv = if builtins ? currentSystem then builtins.getEnv "LAB_KERNEL_VERSION" else "";
        version = if fromEnv == "" then "6.6.63" else fromEnv;
      in
      runCommand "linux-${version}"
        {
          inherit version;
          passthru = {
            inherit version;
            pname = "linux";
            modDirVersion = version;
          };
        }
        ''
          mkdir -p "$out/lib/modules/$version"
          printf 'lab stand-in kernel %s\n' "$version" > "$out/bzImage"
        '';
    linuxPackages = {
      kernel = pkgs.linux;
    };
    linuxPackages_latest = pkgs.linuxPackages;

    # nginx is served by lab-httpd (the NixOS nginx module of the lab writes etc/lab/nginx.json).
    nginx = runCommand "nginx-lab"
      {
        passthru.pname = "nginx";
        meta.mainProgram = "nginx";
      }
      ''
        mkdir -p "$out/bin"
        cat > "$out/bin/nginx" <<'EOF'
        #!/bin/sh
        # LAB STAND-IN nginx: `nginx -c FILE.json` serves the lab's nginx.json with lab-httpd.
        while [ $# -gt 0 ]; do
          case "$1" in -c) exec ${labHttpd} --config "$2" ;; esac
          shift
        done
        echo "nginx: lab stand-in: use -c /etc/lab/nginx.json" >&2
        exit 1
        EOF
        chmod +x "$out/bin/nginx"
      '';

    # pict-rs 0.5: `pict-rs run`, address from PICTRS__SERVER__ADDRESS (as the NixOS module sets it).
    pict-rs = runCommand "pict-rs-0.5.16-lab"
      {
        passthru = {
          pname = "pict-rs";
          version = "0.5.16";
        };
        meta.mainProgram = "pict-rs";
      }
      ''
        mkdir -p "$out/bin"
        cat > "$out/bin/pict-rs" <<EOF
        #!/bin/sh
        # LAB STAND-IN pict-rs: answers every request with one line naming itself.
        addr="\''${PICTRS__SERVER__ADDRESS:-0.0.0.0:8080}"
        port="\''${addr##*:}"
        exec ${labHttpd} --listen "\$addr" --respond "pict-rs on \''${LAB_DOMAIN:-\$(uname -n).lab.test} port \$port src $out"
        EOF
        chmod +x "$out/bin/pict-rs"
      '';

    # node for the atBB units: runs the lab fixtures' stand-in programs (shell scripts shipped as
    # dist/*.js with a "lab stand-in" first line); real JavaScript cannot run in the lab.
    nodejs_22 = runCommand "nodejs-22-lab"
      {
        passthru = {
          pname = "nodejs";
          version = "22-lab";
        };
        meta.mainProgram = "node";
      }
      ''
        mkdir -p "$out/bin"
        cat > "$out/bin/node" <<'EOF'
        #!/bin/sh
        # LAB STAND-IN node: runs a program only if it is a lab stand-in script.
        if [ $# -gt 0 ] && head -n 2 "$1" 2>/dev/null | grep -q 'LAB STAND-IN'; then
          exec /bin/sh "$@"
        fi
        echo "node: lab stand-in: cannot run JavaScript (''${1-no program given})" >&2
        exit 1
        EOF
        chmod +x "$out/bin/node"
      '';
    nodejs = pkgs.nodejs_22;
  };
in
pkgs
