#!/usr/bin/env bash
# `make demo`: bring up the lab and deploy machine1 of it with the same command
# a person runs against a real fleet. (make has already run tools/setup.sh.)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH="$repo/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$repo/ansible.cfg"
# No NIX_CONFIG here: tools/setup.sh wrote what the controller's Nix needs into
# /etc/nix/nix.conf, so the deploy below runs exactly as the commands printed at the end do in
# a person's own shell.

printf '\n==> bringing up the lab (%s simulated NixOS hosts)\n' "${LAB_HOSTS:-3}"
lab/labctl up

# The commands below as a fresh shell runs them: from this checkout, the venv's
# ansible-playbook (nothing else on PATH), this lab's address block.
lab_net=${LAB_NET:-127.0.1}
env_prefix=""
if [[ -n ${LAB_NET:-} ]]; then env_prefix="LAB_NET=$LAB_NET "; fi
playbook="${env_prefix}.venv/bin/ansible-playbook"

printf '\n==> %s -i lab/inventory site.yml -l machine1\n' "$playbook"
.venv/bin/ansible-playbook -i lab/inventory site.yml -l machine1

cat <<TXT

==> done. In a new shell, from this checkout (cd $repo), where to look:
    curl --cacert lab/run/ca/ca.pem --resolve app.machine1.lab.test:443:$lab_net.1 https://app.machine1.lab.test/
                                           machine1's web app, built with lab/inventory/files/machine1/env/.env
    ${env_prefix}lab/labctl ssh machine1 'ls -A /var/src; cat /var/src/config-machine/machine.nix'
                                           the krops layout and the machine data rendered from host_vars
    $playbook -i lab/inventory site.yml -l machine1
                                           run it again: 0 changed, no build, no activation
    $playbook -i lab/inventory site.yml -l machine1 --check --diff
                                           the plan of a change, touching nothing
    $playbook -i lab/inventory playbooks/status.yml
                                           generation, current/booted system per machine
    ${env_prefix}lab/labctl status                      the lab hosts, their addresses and PIDs
    ${env_prefix}make lab-down                          stop the lab and remove everything it made
TXT
