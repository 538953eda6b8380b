"""EXAMPLE placeholder package standing in for LNbits (see examples/lnbits/README.md)."""
