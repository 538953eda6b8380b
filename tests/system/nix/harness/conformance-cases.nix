# TEST HARNESS: module-system cases evaluated through minilib and nixpkgs' real lib by
# tests/system/nix/test_minilib_conformance.py, which compares their JSON (or their error).
# Each case: { modules = [ ... ]; select = config: value; } evaluated with lib.evalModules.
lib:
let
  inherit (lib) mkOption types;
  opt = type: default: mkOption { inherit type default; };
  req = type: mkOption { inherit type; };
  one = options: config: {
    modules = [
      { inherit options; }
      config
    ];
    select = c: c;
  };
in
{
  # ── errors ─────────────────────────────────────────────────────────────
  unknown-option = one { a = opt types.int 1; } { b = 1; };
  unknown-nested-option = one { a.b = opt types.int 1; } { a.c = 2; };
  unknown-in-submodule = one { s = opt (types.submodule { options.x = opt types.int 1; }) { }; } { s.y = 1; };
  wrong-type-bool = one { a = opt types.bool false; } { a = "yes"; };
  wrong-type-int = one { a = opt types.int 0; } { a = "1"; };
  wrong-type-str = one { a = opt types.str ""; } { a = 1; };
  wrong-type-port = one { a = opt types.port 80; } { a = 70000; };
  wrong-type-enum = one { a = opt (types.enum [ "symlink" "merge" ]) "symlink"; } { a = "copy"; };
  wrong-type-list-element = one { a = opt (types.listOf types.int) [ ]; } { a = [ 1 "2" ]; };
  wrong-type-attrs-value = one { a = opt (types.attrsOf types.int) { }; } { a.x = "1"; };
  wrong-type-nullor = one { a = opt (types.nullOr types.int) null; } { a = "x"; };
  wrong-type-submodule-field = one {
    s = opt (types.attrsOf (types.submodule { options.port = opt types.port 1; })) { };
  } { s.web.port = -1; };
  wrong-type-int-between = one { status = opt (types.ints.between 100 599) 200; } { status = 99; };
  wrong-type-str-matching = one { path = opt (types.strMatching "/.*") "/"; } { path = "healthz"; };
  no-value = one { a = req types.str; } { };
  conflicting-values = {
    modules = [
      { options.a = opt types.str ""; }
      { a = "x"; }
      { a = "y"; }
    ];
    select = c: c;
  };
  declared-twice = {
    modules = [
      {
        _file = "first.nix";
        options.a = opt types.int 0;
      }
      {
        _file = "second.nix";
        options.a = opt types.int 1;
      }
    ];
    select = c: c;
  };
  mkif-non-bool = one { a = opt types.int 0; } { a = lib.mkIf "yes" 1; };
  not-an-attrset = one { a.b = opt types.int 0; } { a = 1; };

  # ── priorities and properties ──────────────────────────────────────────
  priorities = {
    modules = [
      {
        options = {
          default-only = opt types.int 1;
          mkdefault-beats-default = opt types.int 1;
          plain-beats-mkdefault = opt types.int 1;
          force-beats-plain = opt types.int 1;
          override-900 = opt types.int 1;
          list-merge = opt (types.listOf types.str) [ "default" ];
          list-order = opt (types.listOf types.str) [ ];
          lines = opt types.lines "";
          attrs-of = opt (types.attrsOf types.int) { };
          bool-or = opt types.bool false;
        };
      }
      {
        mkdefault-beats-default = lib.mkDefault 2;
        plain-beats-mkdefault = lib.mkDefault 2;
        force-beats-plain = lib.mkForce 3;
        override-900 = lib.mkOverride 900 4;
        list-merge = [ "a" ];
        list-order = lib.mkAfter [ "last" ];
        lines = "one";
        attrs-of.x = lib.mkDefault 1;
      }
      {
        plain-beats-mkdefault = 3;
        force-beats-plain = 2;
        override-900 = lib.mkDefault 5;
        list-merge = [ "b" ];
        list-order = lib.mkMerge [
          [ "middle" ]
          (lib.mkBefore [ "first" ])
        ];
        lines = lib.mkAfter "two";
        attrs-of = lib.mkMerge [
          { x = 2; }
          (lib.mkIf false { y = 3; })
          (lib.mkIf true { z = 4; })
        ];
      }
    ];
    select = c: c;
  };
  mkif-mkmerge-pushdown = {
    modules = [
      {
        options.a.x = opt types.int 0;
        options.a.y = opt types.int 0;
        options.b = opt types.bool false;
      }
      (
        { config, ... }:
        {
          config = lib.mkIf config.b (
            lib.mkMerge [
              { a.x = 1; }
              { a.y = lib.mkDefault 2; }
            ]
          );
        }
      )
      { b = true; }
    ];
    select = c: c;
  };
  mkif-false-undeclared-is-still-an-error = one { a = opt types.int 0; } (lib.mkIf false { nope = 1; });

  # ── submodules and composite types ─────────────────────────────────────
  submodules = {
    modules = [
      {
        options.hosts = opt (types.attrsOf (
          types.submodule (
            { name, config, ... }:
            {
              options = {
                serverName = opt types.str name;
                port = opt types.port 80;
                aliases = opt (types.listOf types.str) [ ];
                upstream = opt (types.nullOr types.str) null;
                url = opt types.str "http://${config.serverName}:${toString config.port}";
                locations = opt (types.attrsOf (types.submodule { options.proxy = opt (types.nullOr types.str) null; })) { };
              };
            }
          )
        )) { };
        options.peers = opt (types.listOf (types.submodule { options.key = req types.str; options.keepalive = opt (types.nullOr types.int) null; })) [ ];
      }
      {
        hosts.a.port = 8080;
        hosts.b = {
          aliases = [ "www.b" ];
          locations."/".proxy = "127.0.0.1:1";
        };
        peers = [ { key = "k1"; } ];
      }
      {
        hosts.a.aliases = [ "x" ];
        hosts.b.serverName = lib.mkForce "bee";
        hosts.b.locations."/api".proxy = null;
        peers = [ { key = "k2"; keepalive = 25; } ];
      }
    ];
    select = c: c;
  };
  enum-port-nullor-ok = one {
    mode = opt (types.enum [ "symlink" "merge" ]) "symlink";
    port = opt types.port 5000;
    ports = opt (types.listOf types.port) [ ];
    maybe = opt (types.nullOr types.str) null;
    unset = opt (types.nullOr types.str) null;
    either = opt (types.either types.int types.str) 0;
    anything = opt types.anything { };
  } {
    mode = "merge";
    port = 0;
    ports = [ 80 443 65535 ];
    maybe = "x";
    either = "s";
    anything = { a.b = [ 1 ]; c = true; };
  };
  ints-between-strmatching-ok = one {
    low = opt (types.ints.between 100 599) 200;
    high = opt (types.ints.between 100 599) 200;
    default = opt (types.ints.between 100 599) 200;
    path = opt (types.strMatching "/.*") "/";
    units = opt (types.listOf (types.strMatching "[^/ ]+[.](service|timer)")) [ ];
  } {
    low = 100;
    high = 599;
    path = "/healthz";
    units = [ "a.service" "b.timer" ];
  };
  freeform = {
    modules = [
      {
        options.settings = opt (types.submodule {
          freeformType = types.attrsOf (types.either types.str (types.listOf types.str));
          options.declared = opt types.str "d";
        }) { };
      }
      { settings.extra = [ "a" ]; settings.other = "o"; }
      { settings.extra = [ "b" ]; settings.declared = "D"; }
    ];
    select = c: c;
  };
  module-args = {
    modules = [
      { options.a = opt types.str ""; options.b = opt types.str ""; }
      ({ thing, ... }: { a = thing; })
      ({ config, ... }: { _module.args.thing = "from-args"; b = config.a + "!"; })
    ];
    select = c: c;
  };
  anything-merges-attrs = {
    modules = [
      { options.x = opt types.anything { }; }
      { x.a = 1; x.n.p = "q"; }
      { x.b = true; x.n.r = [ "s" ]; }
    ];
    select = c: c;
  };
  anything-conflicting-lists = {
    modules = [
      { options.x = opt types.anything { }; }
      { x.l = [ 1 ]; }
      { x.l = [ 2 ]; }
    ];
    select = c: c;
  };
  bool-conflict = {
    modules = [
      { options.x = opt types.bool false; }
      { x = true; }
      { x = false; }
    ];
    select = c: c;
  };
  equal-definitions-agree = {
    modules = [
      { options.x = opt types.str ""; options.n = opt types.int 0; }
      { x = "same"; n = 3; }
      { x = "same"; n = 3; }
    ];
    select = c: c;
  };
  either-merge = {
    modules = [
      { options.x = opt (types.either types.str (types.listOf types.str)) [ ]; }
      { x = [ "a" ]; }
      { x = [ "b" ]; }
    ];
    select = c: c;
  };
  nullor-both = {
    modules = [
      { options.x = opt (types.nullOr types.str) null; }
      { x = null; }
      { x = "set"; }
    ];
    select = c: c;
  };
  mkforce-in-submodule-list-order = {
    modules = [
      {
        options.s = opt (types.attrsOf (types.submodule {
          options.l = opt (types.listOf types.int) [ ];
          options.v = opt types.str "d";
        })) { };
      }
      { s.a.l = [ 1 ]; s.a.v = lib.mkForce "forced"; }
      { s.a.l = lib.mkBefore [ 0 ]; s.a.v = "plain"; s.b = { }; }
      { s.a.l = lib.mkAfter [ 9 ]; }
    ];
    select = c: c;
  };
  apply-and-config-reference = {
    modules = [
      {
        options.domain = req types.str;
        options.vhost = mkOption {
          type = types.str;
          default = "app.example";
          apply = v: "<${v}>";
        };
      }
      ({ config, ... }: { domain = "example.org"; vhost = "app.${config.domain}"; })
    ];
    select = c: c;
  };
}
