"""LAB STAND-IN (test infrastructure): the NixOS side of the lab's simulated NixOS hosts.

nixos-rebuild, the system's activate and switch-to-configuration (the toplevel itself is built by
the lab's nixpkgs, lab/nixpkgs), and lab-install. Runs on the lab hosts with the lab's hidden
interpreter /usr/lib/lab/bin/python3 (stdlib only). See lab/README.md.
"""
