"""EXAMPLE placeholder LNbits extension (see examples/README.md)."""
