# The VM's own settings beside its machine data (molecule nixos-vm scenario):
# - sshd, which the deploy connects through (on a real machine its own configuration has it);
# - no public name, so its vhosts serve plain http (no Let's Encrypt certificate can be had),
#   checked over http by the deploy and by the verifier.
{ ... }:
{
  services.openssh = {
    enable = true;
    settings.PermitRootLogin = "prohibit-password";
  };
  aiolabs.webapp.enableACME = false;
  aiolabs.pictrs.enableACME = false;
}
