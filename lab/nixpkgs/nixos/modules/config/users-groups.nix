# LAB (test infrastructure, not NixOS): users.users / users.groups (nixos/modules/config/users-groups.nix)
# with NixOS's user assertions; root always exists. Keys in users.users.<name>.openssh.authorizedKeys
# become /etc/ssh/authorized_keys.d/<name> when services.openssh is enabled (sshd.nix).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption mkDefault types;
  cfg = config.users;
  opt =
    type: default: description:
    mkOption { inherit type default description; };
  nstr = opt (types.nullOr types.str) null;

  userModule =
    { name, config, ... }:
    {
      options = {
        name = opt types.str name "The name of the user account.";
        uid = opt (types.nullOr types.int) null "The account UID.";
        isSystemUser = opt types.bool false "Indicates if the user is a system user or not.";
        isNormalUser = opt types.bool false "Indicates whether this is an account for a “real” user.";
        group = opt types.str "" "The user's primary group.";
        extraGroups = opt (types.listOf types.str) [ ] "The user's auxiliary groups.";
        description = opt types.str "" "A short description of the user account.";
        home = opt types.path "/var/empty" "The user's home directory.";
        homeMode = opt types.str "700" "The user's home directory mode in numeric format.";
        createHome = opt types.bool false "Whether to create the home directory and ensure ownership as well as permissions to match the user.";
        shell = opt (types.nullOr (types.either types.package types.path)) pkgs.bash "The path to the user's shell.";
        hashedPassword = nstr "Specifies the hashed password for the user.";
        hashedPasswordFile = nstr "The full path to a file that contains the hash of the user's password.";
        password = nstr "Specifies the (clear text) password for the user (world-readable in the store).";
        initialPassword = nstr "Specifies the initial password for the user.";
        initialHashedPassword = nstr "Specifies the initial hashed password for the user.";
        packages = opt (types.listOf types.package) [ ] "The set of packages that should be made available to the user.";
        linger = opt (types.nullOr types.bool) null "Whether to enable lingering for this user.";
        openssh.authorizedKeys = {
          keys = opt (types.listOf types.str) [ ] "A list of verbatim OpenSSH public keys that should be added to the user's authorized keys.";
          keyFiles = opt (types.listOf types.path) [ ] "A list of files each containing one OpenSSH public key that should be added to the user's authorized keys.";
        };
      };
      config = lib.mkIf config.isNormalUser {
        home = mkDefault "/home/${config.name}";
        createHome = mkDefault true;
        group = mkDefault "users";
      };
    };
  groupModule =
    { name, ... }:
    {
      options = {
        name = opt types.str name "The name of the group.";
        gid = opt (types.nullOr types.int) null "The group GID.";
        members = opt (types.listOf types.str) [ ] "The user names of the group members, added to the `/etc/group` file.";
      };
    };
  xor = a: b: (a || b) && !(a && b);
in
{
  options.users = {
    users = opt (types.attrsOf (types.submodule userModule)) { } "Additional user accounts to be created automatically by the system.";
    groups = opt (types.attrsOf (types.submodule groupModule)) { } "Additional groups to be created automatically by the system.";
    mutableUsers = opt types.bool true "If set to true, you are free to add new users and groups to the system with the ordinary useradd and groupadd commands.";
  };

  config = {
    users.users.root = {
      uid = 0;
      description = "System administrator";
      home = "/root";
      group = "root";
    };
    users.groups = {
      root.gid = 0;
      wheel.gid = 1;
      users.gid = 100;
      nogroup.gid = 65534;
    };
    assertions = lib.concatMap (
      user:
      let
        isEffectivelySystemUser = user.isSystemUser || (user.uid != null && user.uid < 1000 && !user.isNormalUser);
      in
      [
        {
          assertion = xor isEffectivelySystemUser user.isNormalUser;
          message = ''
            Exactly one of users.users.${user.name}.isSystemUser and users.users.${user.name}.isNormalUser must be set.
          '';
        }
        {
          assertion = user.group != "";
          message = ''
            users.users.${user.name}.group is unset. This used to default to
            nogroup, but this is unsafe. For example you can create a group
            for this user with:
            users.users.${user.name}.group = "${user.name}";
            users.groups.${user.name} = {};
          '';
        }
      ]
    ) (builtins.attrValues cfg.users);
  };
}
