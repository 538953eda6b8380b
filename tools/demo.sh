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
    curl -H 'Host: app.machine1.lab.test' http://127.0.1.1/
                                           machine1's web app, built with lab/inventory/files/machine1/env/.env
    lab/labctl ssh machine1 'ls -A /var/src; cat /var/src/config-machine/machine.nix'
                                           the krops layout and the machine data rendered from host_vars
    ansible-playbook -i lab/inventory site.yml -l machine1
                                           run it again: 0 changed, no build, no activation
    ansible-playbook -i lab/inventory site.yml -l machine1 --check --diff
                                           the plan of a change, touching nothing
    ansible-playbook -i lab/inventory playbooks/status.yml
                                           generation, current/booted system per machine
    lab/labctl status                      the lab hosts, their addresses and PIDs
    make lab-down                          stop the lab and remove everything it made
TXT
