"""EXAMPLE placeholder LNbits extension (see examples/lnbits/README.md)."""
