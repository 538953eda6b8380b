# LAB (test infrastructure, not NixOS): services.postgresql (nixos/modules/services/databases/postgresql.nix).
# The lab has no PostgreSQL: enabling it adds a postgresql.service stand-in that stays active
# (a oneshot with RemainAfterExit), so units ordered after it start as on NixOS.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption mkIf types;
  cfg = config.services.postgresql;
  opt =
    type: default: description:
    mkOption { inherit type default description; };
in
{
  options.services.postgresql = {
    enable = opt types.bool false "Whether to enable PostgreSQL Server.";
    package = opt types.package pkgs.postgresql "The PostgreSQL package to use.";
    dataDir = opt types.path "/var/lib/postgresql/${cfg.package.version or "lab"}" "The data directory for PostgreSQL.";
    enableTCPIP = opt types.bool false "Whether PostgreSQL should listen on all network interfaces.";
    settings = opt (types.attrsOf types.anything) { } "PostgreSQL configuration.";
    authentication = opt types.lines "" "Defines how users authenticate themselves to the server.";
    identMap = opt types.lines "" "Defines the mapping from system users to database users.";
    initialScript = opt (types.nullOr types.path) null "A file containing SQL statements to execute on first startup.";
    ensureDatabases = opt (types.listOf types.str) [ ] "Ensures that the specified databases exist.";
    ensureUsers = opt (types.listOf (
      types.submodule {
        options = {
          name = mkOption {
            type = types.str;
            description = "Name of the user to ensure.";
          };
          ensureDBOwnership = opt types.bool false "Grants the user ownership to a database with the same name.";
          ensureClauses = opt (types.attrsOf types.anything) { } "An attrset of clauses to grant to the user.";
        };
      }
    )) [ ] "Ensures that the specified users exist.";
  };

  config = mkIf cfg.enable {
    assertions = map (u: {
      assertion = u.ensureDBOwnership -> builtins.elem u.name cfg.ensureDatabases;
      message = ''
        For each database user defined with `services.postgresql.ensureUsers` and
        `ensureDBOwnership = true;`, a database with the same name must be defined
        in `services.postgresql.ensureDatabases`.

        Offender: ${u.name} has not been found among databases.
      '';
    }) cfg.ensureUsers;
    systemd.services.postgresql = {
      description = "PostgreSQL Server (lab stand-in: no database)";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "/bin/true";
      };
    };
  };
}
