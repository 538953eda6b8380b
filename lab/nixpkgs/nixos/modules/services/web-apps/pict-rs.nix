# LAB (test infrastructure, not NixOS): services.pict-rs (nixos/modules/services/web-apps/pict-rs.nix)
# for pict-rs 0.5: PICTRS__SERVER__ADDRESS and `pict-rs run`, as the NixOS module does; the
# package is the lab's stand-in (pkgs.pict-rs), which serves one line with lab-httpd.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption mkIf types;
  cfg = config.services.pict-rs;
  opt =
    type: default: description:
    mkOption { inherit type default description; };
in
{
  options.services.pict-rs = {
    enable = opt types.bool false "Whether to enable pict-rs server.";
    package = opt types.package pkgs.pict-rs "The pict-rs package to use.";
    dataDir = opt types.path "/var/lib/pict-rs" "The directory where to store the uploaded images & database.";
    repoPath = opt (types.nullOr types.path) null "The directory where to store the database.";
    storePath = opt (types.nullOr types.path) null "The directory where to store the uploaded images.";
    address = opt types.str "127.0.0.1" "The IPv4 address to deploy the service to.";
    port = opt types.port 8080 "The port which to bind the service to.";
  };

  config = mkIf cfg.enable {
    systemd.services.pict-rs = {
      environment = {
        PICTRS__REPO__PATH = if cfg.repoPath != null then toString cfg.repoPath else "${cfg.dataDir}/sled-repo";
        PICTRS__STORE__PATH = if cfg.storePath != null then toString cfg.storePath else "${cfg.dataDir}/files";
        PICTRS__SERVER__ADDRESS = "${cfg.address}:${toString cfg.port}";
      };
      wantedBy = [ "multi-user.target" ];
      serviceConfig = {
        DynamicUser = true;
        StateDirectory = "pict-rs";
        ExecStart = "${lib.getExe cfg.package} run";
      };
    };
  };
}
