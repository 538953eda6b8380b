# EXAMPLE placeholder for LNbits' own flake.nix (which builds LNbits from uv.lock with
# uv2nix). This one only has the shape: point aiolabs_nixos_sources_lnbits_src at a real
# LNbits checkout for a real machine.
{
  description = "EXAMPLE placeholder shaped like the LNbits flake (not LNbits)";
  outputs =
    { self }:
    {
      example = true;
    };
}
