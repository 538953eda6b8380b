# LAB / TEST INFRASTRUCTURE, not product code: a small, self-contained stand-in for the part
# of nixpkgs' `lib` that the aiolabs NixOS modules and the lab's NixOS option modules
# (lab/nixpkgs/nixos/modules) use, including a minimal module system (`evalModules`).
#
# It exists so the lab and the evaluation tests work where nixpkgs cannot be fetched (CI);
# lab/nixpkgs/lib/default.nix uses nixpkgs' real lib instead whenever NIXPKGS_LIB is set. It
# follows nixpkgs' semantics where the modules depend on them: option declarations,
# `mkIf`/`mkMerge`/`mkOverride`/`mkOrder` (pushed down through attribute sets, discharged at
# options), priorities (`mkDefault` 1000, default 1500, `mkForce` 50), nixpkgs' definition order
# (reverse breadth-first over imports), type checks with nixpkgs' error wording ("is not of
# type", "has no value defined", "does not exist"), submodules with a `name` argument and
# attribute-set definitions as their config, freeform types, `_module.args` (lazy), and imports
# de-duplicated by path. tests/system/nix/test_minilib_conformance.py holds it to the real lib
# (the same modules through both, JSON or error compared) wherever NIXPKGS_LIB is set.
let
  inherit (builtins)
    all
    any
    attrNames
    attrValues
    concatLists
    concatStringsSep
    elem
    filter
    foldl'
    functionArgs
    head
    intersectAttrs
    isAttrs
    isBool
    isFunction
    isInt
    isList
    isPath
    isString
    length
    listToAttrs
    mapAttrs
    substring
    stringLength
    typeOf
    ;

  concatMap = f: xs: concatLists (map f xs);
  reverseList = xs: builtins.genList (i: builtins.elemAt xs (length xs - 1 - i)) (length xs);
  last = xs: builtins.elemAt xs (length xs - 1);
  imap0 = f: xs: builtins.genList (i: f i (builtins.elemAt xs i)) (length xs);
  isDerivation = x: isAttrs x && (x.type or null) == "derivation";
  isStringLike = x: isString x || isPath x || (isAttrs x && x ? outPath);
  hasPrefix = p: s: substring 0 (stringLength p) s == p;
  setAttrByPath = path: value: foldl' (acc: n: { ${n} = acc; }) value (builtins.genList (i: builtins.elemAt path (length path - 1 - i)) (length path));
  # As nixpkgs' recursiveUpdate: the right side wins, attribute sets are merged through.
  recursiveUpdate =
    lhs: rhs:
    lhs
    // mapAttrs (n: v: if isAttrs v && lhs ? ${n} && isAttrs lhs.${n} && !isDerivation v then recursiveUpdate lhs.${n} v else v) rhs;

  showName = n: if builtins.match "[a-zA-Z_][a-zA-Z0-9_'-]*" n != null then n else builtins.toJSON n;
  showOption = loc: concatStringsSep "." (map showName loc);
  showValue =
    v:
    if isString v || isInt v || isBool v || v == null then
      builtins.toJSON v
    else if isDerivation v then
      "<derivation ${v.name or "?"}>"
    else if isPath v then
      toString v
    else
      "<${typeOf v}>";
  showDefs = defs: concatStringsSep "\n" (map (d: "- In `${d.file}': ${showValue d.value}") defs);

  # ── Properties ────────────────────────────────────────────────────────
  mkIf = condition: content: {
    _type = "if";
    inherit condition content;
  };
  mkMerge = contents: {
    _type = "merge";
    inherit contents;
  };
  mkOverride = priority: content: {
    _type = "override";
    inherit priority content;
  };
  mkOrder = priority: content: {
    _type = "order";
    inherit priority content;
  };
  propType = v: if isAttrs v then v._type or null else null;

  # Push mkIf/mkMerge/mkOverride from an attribute set down to its attributes,
  # without forcing any condition (as nixpkgs' pushDownProperties).
  pushDownProperties =
    v:
    let
      t = propType v;
    in
    if t == "merge" then
      concatMap pushDownProperties v.contents
    else if t == "if" then
      map (mapAttrs (_: x: mkIf v.condition x)) (pushDownProperties v.content)
    else if t == "override" then
      map (mapAttrs (_: x: mkOverride v.priority x)) (pushDownProperties v.content)
    else
      [ v ];

  # At an option: expand mkMerge, evaluate mkIf conditions.
  dischargeProperties =
    v:
    let
      t = propType v;
    in
    if t == "merge" then
      concatMap dischargeProperties v.contents
    else if t == "if" then
      if !isBool v.condition then
        throw "‘mkIf’ called with a non-Boolean condition"
      else if v.condition then
        dischargeProperties v.content
      else
        [ ]
    else
      [ v ];

  priorityOf = v: if propType v == "override" then v.priority else 100;
  stripOverride = v: if propType v == "override" then stripOverride v.content else v;
  orderOf = v: if propType v == "order" then v.priority else 1000;
  stripOrder = v: if propType v == "order" then stripOrder v.content else v;

  # Definitions of one option -> { isDefined, value }.
  mergeDefinitions =
    loc: type: defs:
    let
      discharged = concatMap (d: map (value: { inherit (d) file; inherit value; }) (dischargeProperties d.value)) defs;
      best = foldl' (p: d: if priorityOf d.value < p then priorityOf d.value else p) 9999 discharged;
      kept = map (d: d // { value = stripOverride d.value; }) (filter (d: priorityOf d.value == best) discharged);
      ordered = map (d: d // { value = stripOrder d.value; }) (
        builtins.sort (a: b: orderOf a.value < orderOf b.value) kept
      );
      checked = map (
        d:
        if type.check d.value then
          d
        else
          throw "A definition for option `${showOption loc}' is not of type `${type.description}'. Definition values:\n${showDefs [ d ]}"
      ) ordered;
    in
    {
      isDefined = ordered != [ ];
      value =
        if ordered == [ ] then
          throw "The option `${showOption loc}' was accessed but has no value defined. Try setting the option."
        else
          type.merge loc checked;
    };

  mergeEqualOption =
    loc: defs:
    if length defs == 1 then
      (head defs).value
    else
      let
        first = (head defs).value;
      in
      if all (d: d.value == first) defs then
        first
      else
        throw "The option `${showOption loc}' has conflicting definition values:\n${showDefs defs}";

  mergeDefaultOption =
    loc: defs:
    let
      vals = map (d: d.value) defs;
    in
    if length defs == 1 then
      head vals
    else if all isList vals then
      concatLists vals
    else if all isAttrs vals then
      foldl' (a: b: a // b) { } vals
    else if all isBool vals then
      any (x: x) vals
    else if all isString vals then
      concatStringsSep "" vals
    else
      mergeEqualOption loc defs;

  # ── Types ─────────────────────────────────────────────────────────────
  mkOptionType =
    {
      name,
      description ? name,
      check ? (_: true),
      merge ? mergeDefaultOption,
    }:
    {
      _type = "option-type";
      inherit
        name
        description
        check
        merge
        ;
    };

  types = rec {
    unspecified = mkOptionType { name = "unspecified"; };
    raw = mkOptionType {
      name = "raw";
      merge = loc: defs: if length defs == 1 then (head defs).value else throw "The option `${showOption loc}' is defined multiple times.";
    };
    bool = mkOptionType {
      name = "bool";
      description = "boolean";
      check = isBool;
      merge = mergeEqualOption;
    };
    int = mkOptionType {
      name = "int";
      description = "signed integer";
      check = isInt;
      merge = mergeEqualOption;
    };
    # As nixpkgs' types.ints.between (addCheck int, its name and description).
    ints.between =
      lowest: highest:
      if lowest > highest then
        throw "ints.between: lowest must be smaller than highest"
      else
        mkOptionType {
          name = "intBetween";
          description = "integer between ${toString lowest} and ${toString highest} (both inclusive)";
          check = x: isInt x && x >= lowest && x <= highest;
          merge = mergeEqualOption;
        };
    port = mkOptionType {
      name = "port";
      description = "16 bit unsigned integer; between 0 and 65535 (both inclusive)";
      check = x: isInt x && x >= 0 && x <= 65535;
      merge = mergeEqualOption;
    };
    str = mkOptionType {
      name = "str";
      description = "string";
      check = isString;
      merge = mergeEqualOption;
    };
    strMatching =
      pattern:
      mkOptionType {
        name = "strMatching ${builtins.toJSON pattern}";
        description = "string matching the pattern ${pattern}";
        check = x: isString x && builtins.match pattern x != null;
        merge = mergeEqualOption;
      };
    nonEmptyStr = mkOptionType {
      name = "nonEmptyStr";
      description = "non-empty string";
      check = x: isString x && builtins.match "[ \t\n]*" x == null;
      merge = mergeEqualOption;
    };
    lines = mkOptionType {
      name = "lines";
      description = "strings concatenated with \"\\n\"";
      check = isString;
      merge = _: defs: concatStringsSep "\n" (map (d: d.value) defs);
    };
    path = mkOptionType {
      name = "path";
      description = "absolute path";
      check = x: isStringLike x && substring 0 1 (toString x) == "/";
      merge = mergeEqualOption;
    };
    package = mkOptionType {
      name = "package";
      description = "package";
      check = x: isDerivation x || (isString x && hasPrefix builtins.storeDir x);
      merge = mergeEqualOption;
    };
    attrs = mkOptionType {
      name = "attrs";
      description = "attribute set";
      check = isAttrs;
      merge = _: defs: foldl' (a: d: a // d.value) { } defs;
    };
    enum =
      values:
      mkOptionType {
        name = "enum";
        description = "one of ${concatStringsSep ", " (map builtins.toJSON values)}";
        check = x: elem x values;
        merge = mergeEqualOption;
      };
    nullOr =
      t:
      mkOptionType {
        name = "nullOr";
        description = "null or ${t.description}";
        check = x: x == null || t.check x;
        merge =
          loc: defs:
          let
            nulls = filter (d: d.value == null) defs;
          in
          if length nulls == length defs then
            null
          else if nulls != [ ] then
            throw "The option `${showOption loc}` is defined both null and not null, in ${concatStringsSep " and " (map (d: "`${d.file}'") defs)}."
          else
            t.merge loc defs;
      };
    listOf =
      t:
      mkOptionType {
        name = "listOf";
        description = "list of ${t.description}";
        check = isList;
        merge =
          loc: defs:
          map (x: x.value) (
            filter (x: x.isDefined) (
              concatLists (
                imap0 (
                  i: d:
                  imap0 (
                    j: v: mergeDefinitions (loc ++ [ "[definition ${toString (i + 1)}-entry ${toString (j + 1)}]" ]) t [ { inherit (d) file; value = v; } ]
                  ) d.value
                ) defs
              )
            )
          );
      };
    attrsOf =
      t:
      mkOptionType {
        name = "attrsOf";
        description = "attribute set of ${t.description}";
        check = isAttrs;
        merge =
          loc: defs:
          let
            pushed = concatMap (d: map (value: { inherit (d) file; inherit value; }) (pushDownProperties d.value)) defs;
            names = attrNames (foldl' (a: d: a // d.value) { } pushed);
            merged = map (n: {
              name = n;
              value = mergeDefinitions (loc ++ [ n ]) t (
                concatMap (d: if d.value ? ${n} then [ { inherit (d) file; value = d.value.${n}; } ] else [ ]) pushed
              );
            }) names;
          in
          mapAttrs (_: m: m.value) (listToAttrs (filter (m: m.value.isDefined) merged));
      };
    either =
      a: b:
      mkOptionType {
        name = "either";
        description = "${a.description} or ${b.description}";
        check = x: a.check x || b.check x;
        merge =
          loc: defs:
          if all (d: a.check d.value) defs then
            a.merge loc defs
          else if all (d: b.check d.value) defs then
            b.merge loc defs
          else
            mergeEqualOption loc defs;
      };
    oneOf = ts: foldl' either (head ts) (builtins.tail ts);
    anything = mkOptionType {
      name = "anything";
      check = _: true;
      merge =
        loc: defs:
        let
          vals = map (d: d.value) defs;
        in
        if all (v: isAttrs v && !isStringLike v && propType v == null) vals then
          (attrsOf anything).merge loc defs
        else if all isList vals && length defs == 1 then
          (listOf anything).merge loc defs
        else
          mergeEqualOption loc defs;
    };
    submodule =
      module:
      mkOptionType {
        name = "submodule";
        description = "submodule";
        check = x: isAttrs x || isFunction x || isPath x;
        merge =
          loc: defs:
          (evalModulesAt loc {
            # As nixpkgs' types.submodule (shorthandOnlyDefinesConfig): an attribute set
            # definition is the submodule's config; anything else is a module.
            modules = [ module ] ++ map (d: if isAttrs d.value && !isFunction d.value then {
              _file = d.file;
              config = d.value;
            } else {
              _file = d.file;
              imports = [ d.value ];
            }) defs;
            specialArgs = {
              name = last loc;
            };
          }).config;
      };
  };

  # ── Options ───────────────────────────────────────────────────────────
  mkOption = attrs: attrs // { _type = "option"; };
  isOption = x: isAttrs x && (x._type or null) == "option";
  mkEnableOption =
    name:
    mkOption {
      type = types.bool;
      default = false;
      example = true;
      description = "Whether to enable ${name}.";
    };
  literalExpression = text: {
    _type = "literalExpression";
    inherit text;
  };

  # ── Module evaluation ─────────────────────────────────────────────────
  # Declarations are not merged (nixpkgs merges submodule-typed ones): a second declaration is
  # nixpkgs' "already declared" error. Options carry the file that declared them (_declFile).
  markDecls = file: tree: mapAttrs (_: v: if isOption v then v // { _declFile = v._declFile or file; } else if isAttrs v then markDecls file v else v) tree;
  mergeOptionDecls =
    loc: a: b:
    if isOption a || isOption b then
      throw "The option `${showOption loc}' in `${b._declFile or "<unknown-file>"}' is already declared in `${a._declFile or "<unknown-file>"}'."
    else
      a
      // mapAttrs (n: v: if a ? ${n} then mergeOptionDecls (loc ++ [ n ]) a.${n} v else v) b;

  evalModulesAt =
    prefix:
    {
      modules,
      specialArgs ? { },
    }:
    let
      # As nixpkgs: the fixed arguments, then specialArgs, then config._module.args (lazily,
      # one attribute per argument the module function names).
      fixedArgs = {
        inherit lib config specialArgs;
        options = optionTree;
      }
      // specialArgs;
      applyArgs =
        f:
        f (
          fixedArgs
          // mapAttrs (n: _: fixedArgs.${n} or config._module.args.${n}) (functionArgs f)
        );
      load =
        file: m:
        let
          imported = if isPath m || isString m then import m else m;
          applied = if isFunction imported then applyArgs imported else imported;
          structured = applied ? options || applied ? config;
        in
        {
          file = applied._file or file;
          imports = applied.imports or [ ];
          freeformType = applied.freeformType or null;
          options = if structured then applied.options or { } else { };
          config =
            if structured then
              applied.config or { }
            else
              removeAttrs applied [
                "imports"
                "_file"
                "key"
                "meta"
                "_class"
                "disabledModules"
                "freeformType"
              ];
        };
      item = parentKey: parentFile: i: m: {
        key = if isPath m || isString m then toString m else "${parentKey}:${toString i}";
        module = load (if isPath m || isString m then toString m else parentFile) m;
      };
      # Built in, as in nixpkgs: _module.args (the modules' extra arguments), _module.check.
      internalModule = {
        _file = "lib/modules.nix";
        options._module = {
          args = mkOption {
            type = types.attrsOf types.raw;
            default = { };
            internal = true;
          };
          check = mkOption {
            type = types.bool;
            default = true;
            internal = true;
          };
        };
      };
      closure = builtins.genericClosure {
        startSet = imap0 (item "<root>" "<unknown-file>") ([ internalModule ] ++ modules);
        operator = it: imap0 (item it.key it.module.file) it.module.imports;
      };
      # nixpkgs collects modules depth-first and ends up with the reverse of the breadth-first
      # order genericClosure gives: definitions (list order, conflicts) follow nixpkgs'.
      loaded = reverseList (map (it: it.module) closure);
      optionTree = foldl' (mergeOptionDecls prefix) { } (map (m: markDecls m.file m.options) loaded);
      freeformTypes = filter (t: t != null) (map (m: m.freeformType) loaded);
      freeformType = if freeformTypes == [ ] then null else last freeformTypes;

      evalNode =
        loc: rel: opts: defs:
        let
          pushed = concatMap (
            d:
            map (
              value:
              if isAttrs value then
                { inherit (d) file; inherit value; }
              else
                throw ''
                  In module `${d.file}', you're trying to define a value of type `${typeOf value}'
                  rather than an attribute set for the option
                  `${concatStringsSep "." loc}'!

                  This usually happens if `${concatStringsSep "." loc}' has option
                  definitions inside that are not matched. Please check how to properly define
                  this option by e.g. referring to `man 5 configuration.nix'!
                ''
            ) (pushDownProperties d.value)
          ) defs;
          # Definitions no option matches: an error, or the freeform type's (see below).
          undeclared = concatMap (
            d:
            map (n: {
              path = rel ++ [ n ];
              inherit (d) file;
              value = d.value.${n};
            }) (filter (n: !(opts ? ${n})) (attrNames d.value))
          ) pushed;
          sub = n: concatMap (d: if d.value ? ${n} then [ { inherit (d) file; value = d.value.${n}; } ] else [ ]) pushed;
          children = mapAttrs (
            n: o:
            if isOption o then
              {
                value = evalOption (loc ++ [ n ]) o (sub n);
                unmatched = [ ];
              }
            else
              evalNode (loc ++ [ n ]) (rel ++ [ n ]) o (sub n)
          ) opts;
        in
        {
          value = mapAttrs (_: c: c.value) children;
          unmatched = undeclared ++ concatMap (c: c.unmatched) (attrValues children);
        };

      evalOption =
        loc: opt: defs:
        let
          type = opt.type or types.unspecified;
          defaults = if opt ? default then [ { file = "default"; value = mkOverride 1500 opt.default; } ] else [ ];
          merged = (mergeDefinitions loc type (defs ++ defaults)).value;
        in
        if opt ? apply then opt.apply merged else merged;

      root = evalNode prefix [ ] optionTree (map (m: { inherit (m) file; value = m.config; }) loaded);
      firstUnmatched = head root.unmatched;
      unmatchedMessage = "The option `${showOption (prefix ++ firstUnmatched.path)}' does not exist. Definition values:\n${
        showDefs [ firstUnmatched ]
      }";
      freeformConfig =
        if root.unmatched == [ ] then
          { }
        else
          freeformType.merge prefix (
            map (d: {
              inherit (d) file;
              value = setAttrByPath d.path d.value;
            }) root.unmatched
          );
      config =
        if freeformType == null then
          (if root.unmatched == [ ] || !root.value._module.check then root.value else throw unmatchedMessage)
        else
          recursiveUpdate freeformConfig root.value;
    in
    # As nixpkgs: `config` without `_module` (modules still see config._module), which is its own
    # attribute.
    {
      options = optionTree;
      config = removeAttrs config [ "_module" ];
      _module = config._module;
    };

  lib = {
    inherit
      all
      any
      attrNames
      attrValues
      concatLists
      concatMap
      concatStringsSep
      elem
      filter
      foldl'
      hasPrefix
      head
      isDerivation
      last
      length
      listToAttrs
      literalExpression
      mapAttrs
      mergeEqualOption
      mkEnableOption
      mkIf
      mkMerge
      mkOption
      mkOptionType
      mkOrder
      mkOverride
      showOption
      types
      ;
    evalModules = evalModulesAt [ ];
    mkDefault = mkOverride 1000;
    mkOptionDefault = mkOverride 1500;
    mkForce = mkOverride 50;
    mkBefore = mkOrder 500;
    mkAfter = mkOrder 1500;
    optional = c: x: if c then [ x ] else [ ];
    unique = foldl' (acc: e: if elem e acc then acc else acc ++ [ e ]) [ ];
    # As nixpkgs' lib.warn before Nix 2.23 (builtins.warn where Nix has it).
    warn = builtins.warn or (msg: v: builtins.trace "[1;35mevaluation warning:[0m ${msg}" v);
    showWarnings = warnings: res: builtins.foldl' (acc: w: lib.warn w acc) res (builtins.genList (i: builtins.elemAt warnings (length warnings - 1 - i)) (length warnings));
    optionals = c: xs: if c then xs else [ ];
    optionalString = c: s: if c then s else "";
    optionalAttrs = c: a: if c then a else { };
    boolToString = b: if b then "true" else "false";
    hasSuffix =
      s: x:
      let
        ls = stringLength s;
        lx = stringLength x;
      in
      lx >= ls && substring (lx - ls) ls x == s;
    genAttrs =
      names: f:
      listToAttrs (
        map (n: {
          name = n;
          value = f n;
        }) names
      );
    findFirst =
      pred: default: xs:
      let
        found = filter pred xs;
      in
      if found == [ ] then default else head found;
    filterAttrs = pred: set: listToAttrs (concatMap (n: if pred n set.${n} then [ { name = n; value = set.${n}; } ] else [ ]) (attrNames set));
    mapAttrsToList = f: set: map (n: f n set.${n}) (attrNames set);
    getExe = p: "${p}/bin/${p.meta.mainProgram or p.pname or p.name}";
    getExe' = p: exe: "${p}/bin/${exe}";
    escapeShellArg = s: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString s)}'";
    # Stand-ins for what nix/package.nix uses at evaluation time.
    fileset = {
      unions = xs: xs;
      toSource = { root, fileset }: root;
    };
    licenses.agpl3Only = {
      spdxId = "AGPL-3.0-only";
      free = true;
    };
  };
in
lib
