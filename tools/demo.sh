#!/usr/bin/env bash
# `make demo`: bring up the lab and deploy machine1 of it with the same command
# a person runs against a real fleet. (make has already run tools/setup.sh.)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH="$repo/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$repo/ansible.cfg"
# Nix settings for this machine, unless the caller has its own (tools/test.sh explains them).
export NIX_CONFIG=${NIX_CONFIG:-$'substituters =\nexperimental-features = nix-command flakes\nbuild-users-group =\nsandbox = false'}

printf '\n==> bringing up the lab (%s simulated NixOS hosts)\n' "${LAB_HOSTS:-3}"
lab/labctl up

printf '\n==> ansible-playbook -i lab/inventory site.yml -l machine1\n'
ansible-playbook -i lab/inventory site.yml -l machine1

cat <<'TXT'

==> done. Where to look:
    lab/labctl status                      the lab hosts, their addresses and PIDs
    lab/labctl ssh machine1                a root shell on machine1
    ansible-playbook -i lab/inventory playbooks/status.yml
                                           generation, current/booted system per machine
    make lab-down                          stop the lab and remove everything it made

This release deploys what exists so far: input validation and the status
report run end to end; the web-app build, /var/src push and switch stages
arrive with their roles (README.md, "Status").
TXT
