# LAB STAND-IN (test infrastructure, not NixOS): the "system" toplevel of a simulated NixOS lab host.
#
# Called by the lab's nixos-rebuild the way the real one calls '<nixpkgs/nixos>':
#   nix-build system.nix --attr config.system.build.toplevel [-I nixos-config=...] --argstr ...
# The configuration is located by Nix itself (NIXOS_CONFIG, else <nixos-config>), exactly as
# nixpkgs' nixos/lib/from-env.nix does, so a missing <nixos-config> or a syntax/evaluation error in
# configuration.nix or machine.nix fails with Nix's own error. The toplevel is a real derivation
# (builder /bin/sh, PATH of the host's coreutils) whose inputs are the machine data, the
# configuration directory, /var/src/config-shared and the flake trees of enabled services, all
# copied with builtins.path: identical inputs give the identical store path.
{
  # Hostname of the machine building (the lab default when machine.nix has no hostName).
  hostName ? "nixos",
  # Root of the lab host's file system ("/" on a host; a temp dir in the Nix-only tests).
  labRoot ? "/",
  # The host's own loopback address (the stand-in passes it; LAB_NET sets the /24); "" derives it.
  address ? "",
  # Kernel version; the kernel-change fault knob passes another one.
  kernelVersion ? "6.6.63",
  # Tools on the lab host.
  labHttpd ? "/opt/lab/bin/lab-httpd",
  python ? "/usr/bin/python3",
  # Flake mode (nixos-rebuild --flake DIR#ATTR): the flake's directory holds the configuration.
  flakeDir ? "",
  # <nixos-config> with its symlinks followed (nixos-rebuild passes it when <nixos-config> is a
  # symlink), as Nix's import follows them: relative paths resolve beside the link's target.
  nixosConfig ? "",
}:
let
  inherit (builtins)
    attrNames
    concatStringsSep
    filter
    getEnv
    isAttrs
    match
    pathExists
    readDir
    ;

  root = if labRoot == "/" then "" else labRoot;
  hostPath = p: root + p;

  # --- the configuration, found like nixpkgs' from-env.nix --------------------------------------
  configEnv = getEnv "NIXOS_CONFIG";
  configArg = if configEnv != "" then configEnv else <nixos-config>;
  configStr = if nixosConfig != "" then nixosConfig else toString configArg;
  configName = baseNameOf configStr;
  configIsDir = (readDir (dirOf configStr)).${configName} or "" == "directory";
  configDir =
    if flakeDir != "" then
      flakeDir
    else if configIsDir then
      configStr
    else
      dirOf configStr;
  configFile =
    if flakeDir != "" then
      flakeDir + "/flake.nix"
    else if configIsDir then
      configStr + "/default.nix"
    else
      configStr;
  # Parsing and evaluating the module's head catches syntax errors like the real evaluation.
  configModule = import configFile;

  machineFile = configDir + "/machine.nix";
  machineRaw = if pathExists machineFile then import machineFile else { };
  machine =
    if isAttrs machineRaw then
      machineRaw
    else
      throw "machine.nix must evaluate to an attribute set (pure machine data), got ${builtins.typeOf machineRaw}";

  # --- machine data with the lab's defaults ----------------------------------------------------
  host = machine.hostName or hostName;
  domain = machine.domain or "${host}.lab.test";
  services = machine.services or { };
  svc = name: defaults: defaults // (services.${name} or { });
  enabled = s: s.enable or false;

  webapp = svc "webapp" { enable = false; };
  lnbits = svc "lnbits" {
    enable = false;
    port = 5000;
  };
  pictrs = svc "pictrs" {
    enable = false;
    port = 8080;
  };
  atbb = svc "atbb" {
    enable = false;
    domain = "forum.${domain}";
    appviewPort = 3000;
    webPort = 3001;
  };

  hostNumber = match "machine([0-9]+)" hostName;
  hostAddress =
    if address != "" then
      address
    else if hostNumber == null then
      "127.0.0.1"
    else
      "127.0.1.${builtins.head hostNumber}";

  # --- inputs copied into the store -----------------------------------------------------------
  keep =
    path: type:
    let
      base = baseNameOf path;
    in
    !(base == ".git" || (type == "symlink" && match "result(-.*)?" base != null));
  source =
    name: path:
    builtins.path {
      inherit name path;
      filter = keep;
    };
  configSrc = source "nixos-config" configDir;
  sharedPath = hostPath "/var/src/config-shared";
  sharedSrc = if pathExists sharedPath then source "config-shared" sharedPath else null;
  lnbitsSrc = source "lnbits-src" (hostPath "/var/src/lnbits-src");
  atbbSrc = source "atbb" (hostPath "/var/src/atbb");
  inputs = filter (x: x != null) [
    configSrc
    sharedSrc
    (if enabled lnbits then lnbitsSrc else null)
    (if enabled atbb then atbbSrc else null)
  ];

  # --- systemd units ------------------------------------------------------------------------
  quote = s: ''"${builtins.replaceStrings [ ''\'' ''"'' ] [ ''\\'' ''\"'' ] s}"'';
  httpd =
    port: args:
    concatStringsSep " " (
      [
        labHttpd
        "--listen"
        "${hostAddress}:${toString port}"
      ]
      ++ args
    );
  mkUnit =
    {
      description,
      exec,
      environment ? { },
      triggers ? [ ],
    }:
    ''
      [Unit]
      Description=${description}
      After=network.target
    ''
    + (if triggers == [ ] then "" else "X-Restart-Triggers=${concatStringsSep " " triggers}\n")
    + ''

      [Service]
    ''
    + concatStringsSep "" (map (k: "Environment=${quote "${k}=${environment.${k}}"}\n") (attrNames environment))
    + ''
      Type=simple
      ExecStart=${exec}
      Restart=on-failure
      X-StopIfChanged=false

      [Install]
      WantedBy=multi-user.target
    '';

  serviceUnit =
    name: port: body: extra:
    mkUnit (
      {
        description = "${name} (lab stand-in)";
        exec = httpd port [
          "--respond"
          (quote body)
        ];
      }
      // extra
    );

  # lab-httpd's route syntax: HOST[/PREFIX]=static:DIR|proxy:HOST:PORT|respond:TEXT
  route =
    vhost: prefix: target:
    "--route ${quote "${vhost}${if prefix == "/" then "" else prefix}=${target}"}";
  upstream = port: "proxy:${hostAddress}:${toString port}";
  vhostRoutes =
    (if enabled webapp then [ (route "app.${domain}" "/" "static:${hostPath "/var/src/web-app-dist"}") ] else [ ])
    ++ (if enabled lnbits then [ (route "lnbits.${domain}" "/" (upstream lnbits.port)) ] else [ ])
    ++ (if enabled pictrs then [ (route "img.${domain}" "/" (upstream pictrs.port)) ] else [ ])
    ++ (
      if enabled atbb then
        [
          (route atbb.domain "/api/" (upstream atbb.appviewPort))
          (route atbb.domain "/.well-known/" (upstream atbb.appviewPort))
          (route atbb.domain "/" (upstream atbb.webPort))
        ]
      else
        [ ]
    );

  units =
    (
      if vhostRoutes == [ ] then
        { }
      else
        {
          "nginx.service" = mkUnit {
            description = "Nginx Web Server (lab stand-in)";
            exec = httpd 80 vhostRoutes;
          };
        }
    )
    // (
      if enabled lnbits then
        {
          "lnbits.service" =
            serviceUnit "lnbits" lnbits.port "lnbits on ${domain} port ${toString lnbits.port} src ${lnbitsSrc}"
              {
                environment = {
                  LNBITS_EXTENSIONS_PATH = hostPath "/var/src/lnbits-extensions";
                  LNBITS_SRC = "${lnbitsSrc}";
                };
                triggers = [ "${lnbitsSrc}" ];
              };
        }
      else
        { }
    )
    // (
      if enabled pictrs then
        { "pict-rs.service" = serviceUnit "pict-rs" pictrs.port "pict-rs on img.${domain} port ${toString pictrs.port}" { }; }
      else
        { }
    )
    // (
      if enabled atbb then
        {
          "atbb-appview.service" =
            serviceUnit "atbb-appview" atbb.appviewPort
              "atbb-appview for ${atbb.domain} port ${toString atbb.appviewPort} src ${atbbSrc}"
              { triggers = [ "${atbbSrc}" ]; };
          "atbb-web.service" =
            serviceUnit "atbb-web" atbb.webPort "atbb-web for ${atbb.domain} port ${toString atbb.webPort} src ${atbbSrc}"
              { triggers = [ "${atbbSrc}" ]; };
        }
      else
        { }
    );

  # --- derivations ----------------------------------------------------------------------------
  system = builtins.currentSystem;
  hostTools = "/usr/bin:/bin";
  mkDrv =
    attrs:
    builtins.derivation (
      {
        inherit system;
        builder = "/bin/sh";
        PATH = hostTools;
      }
      // attrs
    );

  kernel = mkDrv {
    name = "linux-${kernelVersion}";
    version = kernelVersion;
    args = [
      "-c"
      ''mkdir -p "$out/lib/modules/$version" && printf 'lab stand-in kernel %s\n' "$version" > "$out/bzImage"''
    ];
  };
  initrd = mkDrv {
    name = "initrd-linux-${kernelVersion}";
    version = kernelVersion;
    args = [
      "-c"
      ''mkdir -p "$out" && printf 'lab stand-in initrd for linux %s\n' "$version" > "$out/initrd"''
    ];
  };

  # The lab's activation and switch-to-configuration programs, copied into the store so that every
  # generation carries its own (a rollback runs the old one, as on NixOS).
  labLibSrc = builtins.path {
    name = "lab-nixos-lib-src";
    path = ./.;
    filter =
      path: type:
      type == "regular"
      && builtins.elem (baseNameOf path) [
        "__init__.py"
        "activate.py"
        "proc.py"
        "state.py"
        "stc.py"
        "units.py"
      ];
  };
  labLib = mkDrv {
    name = "lab-nixos-lib";
    args = [
      "-c"
      ''mkdir -p "$out/nixos" && cp ${labLibSrc}/*.py "$out/nixos/"''
    ];
  };

  nixosVersion = machine.nixosVersion or "25.11.19700101.lab";
  revision = machine.configurationRevision or "";
  configurationRevision = if revision == "" then "" else revision;

  toplevel = mkDrv (
  {
    name = "nixos-system-${host}-${nixosVersion}";
    args = [ ./toplevel-builder.sh ];
    inherit
      kernel
      initrd
      labLib
      python
      nixosVersion
      configurationRevision
      ;
    hostName = host;
    kernelParams = "loglevel=4";
    extraDependencies = concatStringsSep "\n" (map toString inputs);
    unitNames = concatStringsSep " " (attrNames units);
    # One attribute per unit file: unit_<name with . - @ as _>.
  }
  // builtins.listToAttrs (
    map (n: {
      name = "unit_" + builtins.replaceStrings [ "." "-" "@" ] [ "_" "_" "_" ] n;
      value = units.${n};
    }) (attrNames units)
  ));

  # Force the configuration module head and the whole machine data before building, so errors in
  # either surface as evaluation errors (nixos-rebuild exits 1), not as build failures.
  checked = builtins.seq configModule (builtins.deepSeq machine toplevel);
in
{
  config.system.build.toplevel = checked;
  system = checked;
  inherit kernel initrd units;
  machine = machine // {
    hostName = host;
    inherit domain;
    address = hostAddress;
  };
}
