# The project's one task runner. The two commands a person needs:
#   make demo   install everything, bring up the lab, deploy machine1 of it
#   make test   install everything and run the whole suite (what CI runs)
SHELL := /bin/bash
.DEFAULT_GOAL := help

export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/.venv/bin:$(PATH)
# Nix settings for the controller are set by the tools/ scripts (tools/test.sh
# explains them); make's $(shell) would turn their newlines into spaces.

LAB_HOSTS ?= 3
export LAB_HOSTS

.PHONY: help setup demo test lint sanity unit system packaging lab-up lab-down lab-status molecule bench ee-context clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install Debian packages, the venv and the collection dependencies
	@tools/setup.sh

demo: setup ## bring up the lab and deploy machine1 of it
	@tools/demo.sh

test: setup ## run the whole suite: lint, sanity, unit, packaging, Nix, lab, molecule
	@tools/test.sh all

lint: setup ## ruff, mypy, shellcheck, yamllint, ansible-lint, antsibull-changelog lint
	@tools/test.sh lint

sanity: setup ## ansible-test sanity on a copy under ansible_collections/aiolabs/nixos
	@tools/test.sh sanity

unit: setup ## unit tests (no Nix, no lab)
	@tools/test.sh unit

packaging: setup ## build the collection tarball, install it, ansible-doc every plugin
	@tools/test.sh packaging

system: setup ## tests on real Nix and on the lab (brings the lab up and down)
	@tools/test.sh system

molecule: setup ## molecule scenarios against the lab
	@tools/test.sh molecule

lab-up: setup ## start LAB_HOSTS simulated NixOS hosts (default 3)
	@lab/labctl up

lab-down: ## stop the lab and remove everything it made
	@lab/labctl down

lab-status: ## show the lab hosts
	@lab/labctl status

bench: setup ## benchmarks side by side (lab: 12 hosts; BENCH_ARGS='noop --hosts 3,12 --repeat 1')
	@tools/test.sh bench

ee-context: setup ## the AWX execution environment's build context in build/ee (docs/awx.md)
	@rm -rf dist build/ee && ansible-galaxy collection build --output-path dist >/dev/null
	@ansible-builder create -f meta/execution-environment.yml -c build/ee --output-filename Containerfile
	@echo "build it where a container engine and the network are: podman build -f build/ee/Containerfile build/ee"

clean: ## remove local outputs (not the caches)
	rm -rf build dist tests/output .pytest_cache .mypy_cache .ruff_cache
