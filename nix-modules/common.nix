# Options every aiolabs module reads: the machine's base domain.
{ lib, ... }:
{
  options.aiolabs.domain = lib.mkOption {
    type = lib.types.str;
    example = "machine1.example.org";
    description = ''
      The machine's base domain. Services get subdomains of it:
      `app.<domain>`, `lnbits.<domain>`, `img.<domain>`.
    '';
  };
}
