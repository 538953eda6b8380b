# LAB (test infrastructure, not NixOS): services.fail2ban (nixos/modules/services/security/fail2ban.nix);
# declared so configurations type-check; the lab runs no fail2ban.
{ lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  opt =
    type: default: description:
    mkOption { inherit type default description; };
in
{
  options.services.fail2ban = {
    enable = opt types.bool false "Whether to enable the fail2ban service.";
    package = opt types.package pkgs.fail2ban "The fail2ban package to use.";
    maxretry = opt types.int 3 "Number of failures before a host gets banned.";
    bantime = opt (types.nullOr types.str) null "Number of seconds that a host is banned.";
    bantime-increment.enable = opt types.bool false "Whether to enable bantime increment.";
    ignoreIP = opt (types.listOf types.str) [ ] "Whitelist of IP addresses or CIDR ranges that are never banned.";
    banaction = opt types.str "iptables-multiport" "Default banning action.";
    jails = opt (types.attrsOf (types.either types.lines (types.attrsOf types.anything))) { } "The configuration of each fail2ban jail.";
    extraPackages = opt (types.listOf types.package) [ ] "Extra packages to be made available to the fail2ban service.";
  };
}
