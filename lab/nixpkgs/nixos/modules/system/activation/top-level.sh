# shellcheck shell=sh disable=SC2154  # a Nix builder: $out and the other variables come from the derivation
# LAB (test infrastructure, not NixOS): builds the toplevel of a lab NixOS system (top-level.nix).
# Runs under /bin/sh with PATH=/usr/bin:/bin and the derivation's attributes in the environment.
set -eu

mkdir -p "$out/bin" "$out/etc" "$out/specialisation"

printf '%s' "$nixosVersion" > "$out/nixos-version"
ln -s "$kernel/bzImage" "$out/kernel"
ln -s "$kernel" "$out/kernel-modules"
ln -s "$initrd/initrd" "$out/initrd"
printf '%s' "init=$out/init $kernelParams" > "$out/kernel-params"
printf 'systemd' > "$out/init-interface-version"
printf '%s' "$systemType" > "$out/system"
: > "$out/extra-dependencies"
for dep in $extraDependencies; do printf '%s\n' "$dep" >> "$out/extra-dependencies"; done
ln -s "$systemPath" "$out/sw"
# bootspec (boot.json), as NixOS writes it; the template names the toplevel "@out@".
sed "s|@out@|$out|g" "$bootspecTemplatePath" > "$out/boot.json"

# environment.etc: etc/TARGET, a copy of its source (files and directories).
# shellcheck disable=SC2086  # store paths: word splitting intended
set -- $etcSources
for target in $etcTargets; do
    mkdir -p "$(dirname "$out/etc/$target")"
    cp -RL "$1" "$out/etc/$target"
    shift
done

cat > "$out/activate" <<SCRIPT
#!/bin/sh
# LAB STAND-IN activation script: repoints /etc/static and /run/current-system (lab/host/nixos/activate.py).
systemConfig=$out
export PYTHONPATH=$labLib
exec $python -m nixos.activate "\$systemConfig"
SCRIPT

cat > "$out/dry-activate" <<SCRIPT
#!/bin/sh
# LAB STAND-IN dry activation script: changes nothing.
systemConfig=$out
export PYTHONPATH=$labLib
exec $python -m nixos.activate --dry "\$systemConfig"
SCRIPT

cat > "$out/bin/switch-to-configuration" <<SCRIPT
#!/bin/sh
# LAB STAND-IN switch-to-configuration (lab/host/nixos/stc.py), the real algorithm in miniature.
export PYTHONPATH=$labLib
exec $python -m nixos.stc $out "\$@"
SCRIPT

cat > "$out/init" <<SCRIPT
#!/bin/sh
# LAB STAND-IN: in the lab, PID 1 is lab-init, which runs $out/activate at boot.
echo "lab stand-in: this system boots through lab-init, not \$0" >&2
exit 1
SCRIPT

chmod +x "$out/activate" "$out/dry-activate" "$out/bin/switch-to-configuration" "$out/init"

# shellcheck disable=SC1090  # system.extraSystemBuilderCmds, written by the configuration
. "$extraSystemBuilderCmdsPath"
