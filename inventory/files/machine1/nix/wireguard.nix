# A machine-specific module (listed in host_vars extra_modules): a WireGuard interface.
# The private key stays on the machine, outside the Nix store.
{ ... }:
{
  networking.wireguard.interfaces.wg0 = {
    ips = [ "10.100.0.1/24" ];
    listenPort = 51820;
    privateKeyFile = "/var/lib/secrets/wireguard.key";
    peers = [
      {
        publicKey = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
        allowedIPs = [ "10.100.0.2/32" ];
      }
    ];
  };
}
