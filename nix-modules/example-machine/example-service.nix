# A machine-only service: a WireGuard tunnel to a backend host. Listed in the
# machine's machine.nix (extraModules) so only this machine gets it.
{ ... }:
let
  port = 51820;
in
{
  networking.wireguard.interfaces.wg0 = {
    ips = [ "10.100.0.2/24" ];
    listenPort = port;
    # Generated on the machine (`wg genkey`); never in the store or the repository.
    privateKeyFile = "/var/lib/wireguard/wg0.key";
    peers = [
      {
        publicKey = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
        allowedIPs = [ "10.100.0.1/32" ];
        endpoint = "backend.example.org:${toString port}";
        persistentKeepalive = 25;
      }
    ];
  };
  networking.firewall.allowedUDPPorts = [ port ];

  # Another example: a one-shot job only this machine runs.
  # systemd.services.backup-lnbits = {
  #   startAt = "daily";
  #   script = "tar czf /var/backups/lnbits.tgz -C ${config.aiolabs.lnbits.stateDir} .";
  # };
}
