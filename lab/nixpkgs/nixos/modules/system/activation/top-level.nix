# LAB (test infrastructure, not NixOS): config.system.build.toplevel of a lab NixOS system
# (nixos/modules/system/activation/top-level.nix), a real derivation (builder /bin/sh,
# PATH=/usr/bin:/bin) with NixOS's layout, built from the evaluated configuration:
#   activate, dry-activate, bin/switch-to-configuration   the lab's Python (activate.py, stc.py)
#   etc/                 environment.etc (nix/nix.conf, ssh/authorized_keys.d/*, lab/nginx.json,
#                        lab/system.json, ...), etc/hostname, etc/systemd/system/*.{service,timer}
#   sw -> system-path    links to the bin/* of systemPackages ++ defaultPackages ++ required
#   kernel, kernel-modules, initrd, kernel-params, init, init-interface-version, nixos-version,
#   system, extra-dependencies, specialisation/, boot.json (bootspec v1)
# As on NixOS, failed assertions abort the build ("Failed assertions:\n- msg") and warnings are
# printed. Unlike NixOS (which warns and defaults it), an unset system.stateVersion is an error.
#
# The lab's activation/switch programs are copied into the store (builtins.path) from
# $LAB_TOOLS/nixos, else /opt/lab/nixos (a lab host), so each generation carries its own; in pure
# evaluation (flakes) they cannot be read and the scripts use /opt/lab/nixos at run time.
# Environment (impure, classic builds): LAB_TOOLS, LAB_PYTHON (default /usr/lib/lab/bin/python3),
# LAB_KERNEL_VERSION (see pkgs: linux).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types concatStringsSep;
  inherit (builtins)
    attrNames
    attrValues
    filter
    getEnv
    pathExists
    toJSON
    ;

  pure = !(builtins ? currentSystem);
  envOr = name: default: if pure then default else (let v = getEnv name; in if v == "" then default else v);

  labTools = envOr "LAB_TOOLS" "/opt/lab";
  labNixosDir = "${labTools}/nixos";
  python = envOr "LAB_PYTHON" "/usr/lib/lab/bin/python3";
  labLib =
    if pure then
      "/opt/lab"
    else if pathExists (labNixosDir + "/activate.py") then
      pkgs.runCommand "lab-nixos-lib"
        {
          src = builtins.path {
            name = "lab-nixos-lib-src";
            path = labNixosDir;
            filter = path: type: type == "regular" && lib.hasSuffix ".py" (baseNameOf path);
          };
        }
        ''
          mkdir -p "$out/nixos"
          cp "$src"/*.py "$out/nixos/"
        ''
    else
      throw "lab: ${labNixosDir}/activate.py not found: the lab's activation programs are read from $LAB_TOOLS/nixos (the lab's lab/host), else /opt/lab/nixos on a lab host";

  failedAssertions = map (x: x.message) (filter (x: !x.assertion) config.assertions);

  stateVersionTry = builtins.tryEval config.system.stateVersion;
  stateVersion =
    if stateVersionTry.success then
      stateVersionTry.value
    else
      throw ''
        system.stateVersion is not set (or not a string). NixOS would warn and default it to ${config.system.nixos.release},
        which silently changes stateful defaults; the lab refuses, as the collection's validation does.
        Set system.stateVersion to the NixOS release the machine was first installed with, e.g. system.stateVersion = "25.05";
        (see https://nixos.org/manual/nixos/stable/options#opt-system.stateVersion).'';

  kernel = config.boot.kernelPackages.kernel;
  initrd = pkgs.runCommand "initrd-linux-${kernel.version}" { inherit (kernel) version; } ''
    mkdir -p "$out"
    printf 'lab stand-in initrd for linux %s\n' "$version" > "$out/initrd"
  '';

  units = config.systemd.units;
  vhosts = if config.services.nginx.enable then config.services.nginx.virtualHosts else { };
  packageName = p: p.pname or (p.name or "unknown");
  allPackages = config.environment.systemPackages ++ config.environment.defaultPackages ++ config.system.lab.requiredPackages;

  systemJSON = {
    inherit stateVersion;
    hostName = config.networking.hostName;
    units = attrNames units;
    vhosts = builtins.listToAttrs (
      map (n: {
        name = if vhosts.${n}.serverName != null then vhosts.${n}.serverName else n;
        value = {
          ssl = vhosts.${n}.onlySSL || vhosts.${n}.addSSL || vhosts.${n}.forceSSL;
          inherit (vhosts.${n}) forceSSL;
        };
      }) (attrNames vhosts)
    );
    packages = lib.unique (map packageName allPackages);
    nixPath = config.nix.nixPath;
    openssh = {
      inherit (config.services.openssh) enable ports;
      inherit (config.services.openssh.settings) PermitRootLogin PasswordAuthentication;
    };
    authorizedKeys = map (u: u.name) (
      filter (u: config.services.openssh.enable && (u.openssh.authorizedKeys.keys != [ ] || u.openssh.authorizedKeys.keyFiles != [ ])) (
        attrValues config.users.users
      )
    );
    timeZone = config.time.timeZone;
    nixosVersion = config.system.nixos.version;
    bootLoader = config.system.lab.bootLoader;
  };

  # nixos/modules/system/activation/bootspec.nix: $out/boot.json (bootspec v1), with systemd-boot's
  # extension when it is the boot loader. "@out@" is the toplevel, filled in by the builder.
  bootspec = {
    "org.nixos.bootspec.v1" = {
      system = pkgs.system;
      init = "@out@/init";
      initrd = "${initrd}/initrd";
      kernel = "${kernel}/bzImage";
      kernelParams = config.boot.kernelParams;
      label = "NixOS ${config.system.nixos.codeName} ${config.system.nixos.label} (Linux ${kernel.modDirVersion or kernel.version})";
      toplevel = "@out@";
    };
    "org.nixos.specialisation.v1" = { };
  }
  // lib.optionalAttrs config.boot.loader.systemd-boot.enable {
    "org.nixos.systemd-boot".sortKey = config.boot.loader.systemd-boot.sortKey;
  };

  etc = lib.filterAttrs (_: e: e.enable) config.environment.etc;
  etcNames = attrNames etc;

  nixosVersionPkg = pkgs.writeShellScriptBin "nixos-version" ''
    # LAB STAND-IN nixos-version
    case "''${1-}" in
      --configuration-revision)
        ${
          if config.system.configurationRevision == null then
            ''
              echo "$0: configuration revision is unknown" >&2
              exit 1''
          else
            "echo ${lib.escapeShellArg config.system.configurationRevision}"
        } ;;
      --hash|--revision) echo "lab" ;;
      --json) printf '%s\n' ${lib.escapeShellArg (toJSON ({ nixosVersion = config.system.nixos.version; } // lib.optionalAttrs (config.system.configurationRevision != null) { inherit (config.system) configurationRevision; }))} ;;
      *) echo ${lib.escapeShellArg "${config.system.nixos.version} (${config.system.nixos.codeName})"} ;;
    esac
  '';

  baseSystem = pkgs.runCommand "nixos-system-${config.system.name}-${config.system.nixos.label}" {
    inherit kernel initrd labLib python;
    systemPath = config.system.path;
    nixosVersion = config.system.nixos.version;
    configurationRevision = if config.system.configurationRevision == null then "" else config.system.configurationRevision;
    hostName = config.networking.hostName;
    kernelParams = concatStringsSep " " config.boot.kernelParams;
    systemType = pkgs.system;
    extraDependencies = map toString config.system.extraDependencies;
    etcTargets = map (n: etc.${n}.target) etcNames;
    etcSources = map (n: etc.${n}.source) etcNames;
    extraSystemBuilderCmds = config.system.extraSystemBuilderCmds;
    bootspecTemplate = toJSON bootspec;
    passAsFile = [ "extraSystemBuilderCmds" "bootspecTemplate" ];
  } (builtins.readFile ./top-level.sh);

  checked =
    if failedAssertions != [ ] then
      throw "\nFailed assertions:\n${concatStringsSep "\n" (map (x: "- ${x}") failedAssertions)}"
    else
      builtins.seq stateVersion (
        lib.showWarnings config.warnings baseSystem
      );
in
{
  options.system = {
    build = mkOption {
      type = types.attrsOf types.unspecified;
      default = { };
      description = "Attribute set of derivations used to set up the system.";
    };
    extraDependencies = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
      description = "A list of paths that should be included in the system closure but generally not visible to users.";
    };
    extraSystemBuilderCmds = mkOption {
      type = types.lines;
      internal = true;
      default = "";
      description = "This code will be added to the builder creating the system store path.";
    };
    copySystemConfiguration = mkOption {
      type = types.bool;
      default = false;
      description = "If enabled, copies the NixOS configuration file (lab: not copied).";
    };
    lab.requiredPackages = mkOption {
      type = types.listOf types.package;
      internal = true;
      description = "LAB: packages every lab system has in sw/bin (systemd's tools, nixos-rebuild, nixos-version).";
    };
  };

  config = {
    system.lab.requiredPackages = [
      pkgs.systemd
      pkgs.nixos-rebuild
      nixosVersionPkg
    ];
    environment.etc = {
      hostname = lib.mkIf (config.networking.hostName != "") { text = config.networking.hostName + "\n"; };
      "lab/system.json".text = toJSON systemJSON;
    }
    // builtins.listToAttrs (
      map (n: {
        name = "systemd/system/${n}";
        value.source = pkgs.writeText n units.${n}.text;
      }) (attrNames units)
    );
    system.build.toplevel = checked;
    system.build.etc = etc;
    system.build.kernel = kernel;
    system.build.initialRamdisk = initrd;
  };
}
