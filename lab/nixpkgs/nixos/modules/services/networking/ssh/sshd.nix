# LAB (test infrastructure, not NixOS): services.openssh (nixos/modules/services/networking/ssh/sshd.nix).
# As on NixOS, users' openssh.authorizedKeys become /etc/ssh/authorized_keys.d/<user> only when
# services.openssh.enable; the lab's sshd (lab-init) reads them, so a system without root's key
# locks the deploy out. The lab runs its own sshd: no sshd.service unit is generated here;
# the settings are recorded in etc/lab/system.json.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types mkIf;
  cfg = config.services.openssh;
  opt =
    type: default: description:
    mkOption { inherit type default description; };
  usersWithKeys = builtins.filter (
    u: u.openssh.authorizedKeys.keys != [ ] || u.openssh.authorizedKeys.keyFiles != [ ]
  ) (builtins.attrValues config.users.users);
in
{
  options.services.openssh = {
    enable = opt types.bool false "Whether to enable the OpenSSH secure shell daemon, which allows secure remote logins.";
    openFirewall = opt types.bool true "Whether to automatically open the specified ports in the firewall.";
    ports = opt (types.listOf types.port) [ 22 ] "Specifies on which ports the SSH daemon listens.";
    listenAddresses = opt (types.listOf (
      types.submodule {
        options = {
          addr = opt (types.nullOr types.str) null "Host, IPv4 or IPv6 address to listen to.";
          port = opt (types.nullOr types.int) null "Port to listen to.";
        };
      }
    )) [ ] "List of addresses and ports to listen on (ListenAddress directive in config).";
    startWhenNeeded = opt types.bool false "If set, {command}`sshd` is socket-activated.";
    allowSFTP = opt types.bool true "Whether to enable the SFTP subsystem in the SSH daemon.";
    authorizedKeysFiles = opt (types.listOf types.str) [ ] "Specify the rules for which files to read on the host.";
    extraConfig = opt types.lines "" "Verbatim contents of {file}`sshd_config`.";
    hostKeys = opt (types.listOf types.attrs) [
      {
        type = "rsa";
        bits = 4096;
        path = "/etc/ssh/ssh_host_rsa_key";
      }
      {
        type = "ed25519";
        path = "/etc/ssh/ssh_host_ed25519_key";
      }
    ] "NixOS can automatically generate SSH host keys.";
    settings = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf (
          types.nullOr (
            types.oneOf [
              types.bool
              types.int
              types.str
              (types.listOf types.str)
            ]
          )
        );
        options = {
          PermitRootLogin = opt (types.enum [
            "yes"
            "without-password"
            "prohibit-password"
            "forced-commands-only"
            "no"
          ]) "prohibit-password" "Whether the root user can login using ssh.";
          PasswordAuthentication = opt types.bool true "Specifies whether password authentication is allowed.";
          KbdInteractiveAuthentication = opt types.bool true "Specifies whether keyboard-interactive authentication is allowed.";
          X11Forwarding = opt types.bool false "Whether to allow X11 connections to be forwarded.";
          UseDns = opt types.bool false "Specifies whether sshd(8) should look up the remote host name.";
          LogLevel = opt (types.nullOr (types.enum [
            "QUIET"
            "FATAL"
            "ERROR"
            "INFO"
            "VERBOSE"
            "DEBUG"
            "DEBUG1"
            "DEBUG2"
            "DEBUG3"
          ])) "INFO" "Gives the verbosity level that is used when logging messages from sshd(8).";
          AllowUsers = opt (types.nullOr (types.listOf types.str)) null "If specified, login is allowed only for the listed users.";
          DenyUsers = opt (types.nullOr (types.listOf types.str)) null "If specified, login is disallowed for all the listed users.";
        };
      };
      default = { };
      description = "Configuration for {file}`sshd_config`.";
    };
  };

  config = mkIf cfg.enable {
    environment.etc = builtins.listToAttrs (
      map (u: {
        name = "ssh/authorized_keys.d/${u.name}";
        value = {
          mode = "0444";
          source = pkgs.writeText "${u.name}-authorized_keys" ''
            ${lib.concatStringsSep "\n" u.openssh.authorizedKeys.keys}
            ${lib.concatStringsSep "" (map (f: builtins.readFile f + "\n") u.openssh.authorizedKeys.keyFiles)}
          '';
        };
      }) usersWithKeys
    );
    networking.firewall.allowedTCPPorts = lib.optionals cfg.openFirewall cfg.ports;
  };
}
