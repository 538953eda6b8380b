"""LAB STAND-IN (test infrastructure): the NixOS side of the lab's simulated NixOS hosts.

nixos-rebuild, the "system" derivation (system.nix), its activate and switch-to-configuration, and
lab-install. Runs on the lab hosts with Debian's python3 (stdlib only). See lab/README.md.
"""
