# The VM has no public name: its vhosts serve plain http (no Let's Encrypt certificate can be
# had), checked over http by the deploy and by the verifier.
{ ... }:
{
  aiolabs.webapp.enableACME = false;
  aiolabs.pictrs.enableACME = false;
}
