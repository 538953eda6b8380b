# LAB (test infrastructure, not NixOS): the lab's declarations of NixOS's systemd.services,
# systemd.timers and systemd.tmpfiles options (names, types and defaults as in nixpkgs'
# nixos/lib/systemd-unit-options.nix and nixos/modules/system/boot/systemd.nix) and their
# implementation as unit files, following nixpkgs' systemd-lib.nix rules:
#   description/after/wants/... -> [Unit]; restartTriggers -> X-Restart-Triggers= (a store file);
#   script/preStart/postStart/... -> store scripts in ExecStart/ExecStartPre/ExecStartPost/...;
#   environment (+ path -> PATH) -> Environment="N=V"; serviceConfig verbatim (lists repeat the key);
#   reloadIfChanged -> X-ReloadIfChanged=true, restartIfChanged=false -> X-RestartIfChanged=false,
#   stopIfChanged=false -> X-StopIfChanged=false; wantedBy -> [Install] WantedBy=;
#   startAt -> NAME.timer with OnCalendar=.
# The units land in config.systemd.units."NAME.service".text; top-level.nix writes them to
# $toplevel/etc/systemd/system/.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkOption
    types
    mkIf
    mkMerge
    mkAfter
    optionalAttrs
    optionalString
    concatStringsSep
    ;
  inherit (builtins)
    attrNames
    concatLists
    isList
    isPath
    listToAttrs
    filter
    toJSON
    ;

  cfg = config.systemd;

  opt =
    type: default: description:
    mkOption { inherit type default description; };
  units = opt (types.listOf types.str) [ ];

  # nixos/lib/systemd-unit-options.nix: a unit option value and its merge.
  unitScalar = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
    types.package
  ];
  unitOption = types.either unitScalar (types.listOf unitScalar);

  toOption =
    x:
    if x == true then
      "true"
    else if x == false then
      "false"
    else
      toString x;
  attrsToSection =
    as:
    concatStringsSep "" (
      concatLists (map (name: map (x: "${name}=${toOption x}\n") (if isList as.${name} then as.${name} else [ as.${name} ])) (attrNames as))
    );

  flatten = x: if isList x then concatLists (map flatten x) else [ x ];
  triggerFile =
    kind: name: xs:
    "${pkgs.writeText "${kind}-${name}" (toString (map (x: if isPath x then "${x}" else x) (flatten xs)))}";

  shellEscapeName = n: builtins.replaceStrings [ "\\" "@" ] [ "-" "_" ] n;
  makeJobScript =
    name: text:
    let
      scriptName = shellEscapeName name;
    in
    # As nixpkgs: the derivation is unit-script-NAME, the program bin/NAME.
    "${
      pkgs.writeTextFile {
        name = "unit-script-${scriptName}";
        executable = true;
        destination = "/bin/${scriptName}";
        text = ''
          #!${pkgs.runtimeShell}
          set -e

          ${text}
        '';
      }
    }/bin/${scriptName}";

  commonUnitOptions = {
    enable = opt types.bool true "Whether the unit is part of the system (lab: false leaves it out).";
    description = opt types.str "" "Description of this unit.";
    documentation = units "A list of URIs referencing documentation for this unit.";
    requires = units "Start these units when this unit is started; stop this unit when they stop.";
    wants = units "Start these units when this unit is started.";
    upholds = units "Keep these units running while this unit runs.";
    after = units "If the specified units are started at the same time as this unit, delay this unit until they have started.";
    before = units "If the specified units are started at the same time as this unit, delay them until this unit has started.";
    bindsTo = units "Like requires, but stronger.";
    partOf = units "Stop or restart this unit when one of these is stopped or restarted.";
    conflicts = units "Stop these units when this unit starts.";
    requisite = units "Like requires, but the units must already be active.";
    wantedBy = units "Units that want this unit ([Install] WantedBy=).";
    requiredBy = units "Units that require this unit.";
    upheldBy = units "Units that uphold this unit.";
    aliases = units "Aliases of this unit.";
    onFailure = units "Units activated when this unit enters the failed state.";
    onSuccess = units "Units activated when this unit enters the inactive state.";
    restartTriggers = opt (types.listOf types.unspecified) [ ] "Values that, when changed, restart the unit (X-Restart-Triggers).";
    reloadTriggers = opt (types.listOf unitOption) [ ] "Values that, when changed, reload the unit (X-Reload-Triggers).";
    unitConfig = opt (types.attrsOf unitOption) { } "Each attribute in this set specifies an option in the [Unit] section.";
    overrideStrategy = opt (types.enum [
      "asDropinIfExists"
      "asDropin"
    ]) "asDropinIfExists" "How the unit relates to an upstream unit of the same name.";
  };

  # The [Unit] section as nixpkgs' unitConfig mixin builds it.
  unitSection =
    name: def:
    optionalAttrs (def.requires != [ ]) { Requires = toString def.requires; }
    // optionalAttrs (def.wants != [ ]) { Wants = toString def.wants; }
    // optionalAttrs (def.upholds != [ ]) { Upholds = toString def.upholds; }
    // optionalAttrs (def.after != [ ]) { After = toString def.after; }
    // optionalAttrs (def.before != [ ]) { Before = toString def.before; }
    // optionalAttrs (def.bindsTo != [ ]) { BindsTo = toString def.bindsTo; }
    // optionalAttrs (def.partOf != [ ]) { PartOf = toString def.partOf; }
    // optionalAttrs (def.conflicts != [ ]) { Conflicts = toString def.conflicts; }
    // optionalAttrs (def.requisite != [ ]) { Requisite = toString def.requisite; }
    // optionalAttrs (def.restartTriggers != [ ]) {
      X-Restart-Triggers = triggerFile "X-Restart-Triggers" name def.restartTriggers;
    }
    // optionalAttrs (def.reloadTriggers != [ ]) {
      X-Reload-Triggers = triggerFile "X-Reload-Triggers" name def.reloadTriggers;
    }
    // optionalAttrs (def.description != "") { Description = def.description; }
    // optionalAttrs (def.documentation != [ ]) { Documentation = toString def.documentation; }
    // optionalAttrs (def.onFailure != [ ]) { OnFailure = toString def.onFailure; }
    // optionalAttrs (def.onSuccess != [ ]) { OnSuccess = toString def.onSuccess; }
    // def.unitConfig;

  commonUnitText =
    name: def: lines:
    ''
      [Unit]
      ${attrsToSection (unitSection name def)}
    ''
    + lines
    + optionalString (def.wantedBy != [ ]) ''

      [Install]
      WantedBy=${concatStringsSep " " def.wantedBy}
    '';

  serviceModule =
    { name, config, ... }:
    {
      options = commonUnitOptions // {
        name = opt types.str "${name}.service" "The name of this systemd unit, including its extension.";
        environment = opt (types.attrsOf (
          types.nullOr (
            types.oneOf [
              types.str
              types.path
              types.package
            ]
          )
        )) { } "Environment variables passed to the service's processes.";
        path = opt (types.listOf (types.either types.package types.str)) [
        ] "Packages added to the service's PATH (their bin/ and sbin/).";
        serviceConfig = opt (types.attrsOf unitOption) { } "Each attribute in this set specifies an option in the [Service] section.";
        script = opt types.lines "" "Shell commands executed as the service's main process.";
        scriptArgs = opt types.str "" "Arguments passed to the main process script.";
        preStart = opt types.lines "" "Shell commands executed before the service's main process is started.";
        postStart = opt types.lines "" "Shell commands executed after the service's main process is started.";
        reload = opt types.lines "" "Shell commands executed when the service's main process is reloaded.";
        preStop = opt types.lines "" "Shell commands executed to stop the service.";
        postStop = opt types.lines "" "Shell commands executed after the service's main process has exited.";
        restartIfChanged = opt types.bool true "Whether the service should be restarted during a NixOS configuration switch if its definition has changed.";
        reloadIfChanged = opt types.bool false "Whether the service should be reloaded during a NixOS configuration switch if its definition has changed.";
        stopIfChanged = opt types.bool true "If set, a changed unit is stopped in the old configuration and started in the new one; else restarted.";
        startAt = opt (types.either types.str (types.listOf types.str)) [ ] "Automatically start this unit at the given date/time (OnCalendar=).";
        enableStrictShellChecks = opt types.bool false "Enable running shellcheck on the generated scripts (lab: not checked).";
      };
      config = mkMerge [
        {
          # nixpkgs' stage2ServiceConfig: the minimal default PATH of a service.
          path = mkAfter [
            pkgs.coreutils
            pkgs.findutils
            pkgs.gnugrep
            pkgs.gnused
            pkgs.systemd
          ];
        }
        (mkIf (config.path != [ ]) {
          environment.PATH = "${concatStringsSep ":" (map (p: "${p}/bin") config.path)}:${
            concatStringsSep ":" (map (p: "${p}/sbin") config.path)
          }";
        })
        (mkIf (config.preStart != "") {
          serviceConfig.ExecStartPre = [ (makeJobScript "${name}-pre-start" config.preStart) ];
        })
        (mkIf (config.script != "") {
          serviceConfig.ExecStart = makeJobScript "${name}-start" config.script + " " + config.scriptArgs;
        })
        (mkIf (config.postStart != "") {
          serviceConfig.ExecStartPost = [ (makeJobScript "${name}-post-start" config.postStart) ];
        })
        (mkIf (config.reload != "") {
          serviceConfig.ExecReload = makeJobScript "${name}-reload" config.reload;
        })
        (mkIf (config.preStop != "") {
          serviceConfig.ExecStop = makeJobScript "${name}-pre-stop" config.preStop;
        })
        (mkIf (config.postStop != "") {
          serviceConfig.ExecStopPost = makeJobScript "${name}-post-stop" config.postStop;
        })
      ];
    };

  timerModule =
    { name, ... }:
    {
      options = commonUnitOptions // {
        name = opt types.str "${name}.timer" "The name of this systemd unit, including its extension.";
        timerConfig = opt (types.attrsOf unitOption) { } "Each attribute in this set specifies an option in the [Timer] section.";
      };
    };

  serviceText =
    name: def:
    commonUnitText name def (
      ''
        [Service]
      ''
      + (
        let
          env = cfg.globalEnvironment // def.environment;
        in
        concatStringsSep "" (
          map (n: optionalString (env.${n} != null) "Environment=${toJSON "${n}=${env.${n}}"}\n") (attrNames env)
        )
      )
      + (
        if def.reloadIfChanged then
          ''
            X-ReloadIfChanged=true
          ''
        else if !def.restartIfChanged then
          ''
            X-RestartIfChanged=false
          ''
        else
          ""
      )
      + optionalString (!def.stopIfChanged) ''
        X-StopIfChanged=false
      ''
      + attrsToSection def.serviceConfig
    );

  timerText =
    name: def:
    commonUnitText name def ''
      [Timer]
      ${attrsToSection def.timerConfig}
    '';

  enabled = set: filter (n: set.${n}.enable) (attrNames set);
  unitsOf =
    suffix: toText: set:
    listToAttrs (
      map (n: {
        name = "${n}.${suffix}";
        value = {
          text = toText n set.${n};
          inherit (set.${n}) wantedBy;
        };
      }) (enabled set)
    );
in
{
  options.systemd = {
    services = opt (types.attrsOf (types.submodule serviceModule)) { } "Definition of systemd service units.";
    timers = opt (types.attrsOf (types.submodule timerModule)) { } "Definition of systemd timer units.";
    targets = opt (types.attrsOf (types.submodule { options = commonUnitOptions; })) { } "Definition of systemd target units (lab: always active, not written).";
    globalEnvironment = opt (types.attrsOf (
      types.nullOr (
        types.oneOf [
          types.str
          types.path
          types.package
        ]
      )
    )) { } "Environment variables passed to all systemd units.";
    packages = opt (types.listOf types.package) [ ] "Packages providing systemd units (lab: not read).";
    enableStrictShellChecks = opt types.bool false "Whether to run shellcheck on the generated scripts (lab: not checked).";
    tmpfiles.rules = opt (types.listOf types.str) [ ] "Rules for creation, deletion and cleaning of volatile and temporary files.";
    tmpfiles.settings = opt (types.attrsOf (types.attrsOf (types.attrsOf types.anything))) { } "Declare systemd-tmpfiles rules (tmpfiles.d(5)).";
    units = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      internal = true;
      description = "The generated unit files: NAME -> { text, wantedBy } (lab: read-only in practice).";
    };
  };

  config = {
    # startAt -> a timer, as nixpkgs' systemd.nix does.
    systemd.timers = listToAttrs (
      map (n: {
        name = n;
        value = {
          wantedBy = [ "timers.target" ];
          timerConfig.OnCalendar = cfg.services.${n}.startAt;
        };
      }) (filter (n: cfg.services.${n}.startAt != [ ]) (attrNames cfg.services))
    );
    systemd.units = unitsOf "service" serviceText cfg.services // unitsOf "timer" timerText cfg.timers;

    # nixos/modules/system/boot/systemd/tmpfiles.nix: the rules as tmpfiles.d files, which the
    # lab's activation applies (d, L+, ...) as systemd-tmpfiles does on NixOS.
    environment.etc = {
      "tmpfiles.d/00-nixos.conf".text = ''
        # This file is created automatically and should not be modified.
        # Please change the option ‘systemd.tmpfiles.rules’ instead.

        ${concatStringsSep "\n" cfg.tmpfiles.rules}
      '';
    }
    // listToAttrs (
      map (file: {
        name = "tmpfiles.d/${file}.conf";
        value.text = concatStringsSep "" (
          concatLists (
            map (
              path:
              map (
                type:
                let
                  r = cfg.tmpfiles.settings.${file}.${path}.${type};
                  f = k: toString (r.${k} or "-");
                in
                "${type} ${path} ${f "mode"} ${f "user"} ${f "group"} ${f "age"} ${f "argument"}\n"
              ) (attrNames cfg.tmpfiles.settings.${file}.${path})
            ) (attrNames cfg.tmpfiles.settings.${file})
          )
        );
      }) (attrNames cfg.tmpfiles.settings)
    );
  };
}
