"""EXAMPLE placeholder package standing in for LNbits (see examples/README.md)."""
