# shellcheck shell=sh disable=SC2154  # a Nix builder: $out and the other variables come from the derivation
# LAB STAND-IN (test infrastructure): builds the toplevel of a lab "NixOS system"; see system.nix.
# Runs as the derivation's builder under /bin/sh with PATH=/usr/bin:/bin and the derivation's
# attributes in the environment.
set -eu

mkdir -p "$out/bin" "$out/etc/systemd/system" "$out/specialisation" "$out/sw/bin"

printf '%s' "$nixosVersion" > "$out/nixos-version"
ln -s "$kernel/bzImage" "$out/kernel"
ln -s "$kernel" "$out/kernel-modules"
ln -s "$initrd/initrd" "$out/initrd"
printf '%s' "init=$out/init $kernelParams" > "$out/kernel-params"
printf 'systemd' > "$out/init-interface-version"
printf '%s' "$system" > "$out/system"
printf '%s\n' "$extraDependencies" > "$out/extra-dependencies"
printf '%s\n' "$hostName" > "$out/etc/hostname"

for name in $unitNames; do
    var="unit_$(printf '%s' "$name" | tr '.@-' '___')"
    eval "printf '%s' \"\$$var\"" > "$out/etc/systemd/system/$name"
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

cat > "$out/sw/bin/nixos-version" <<SCRIPT
#!/bin/sh
# LAB STAND-IN nixos-version
case "\${1-}" in
    --configuration-revision)
        if [ -z "$configurationRevision" ]; then
            echo "\$0: configuration revision is unknown" >&2
            exit 1
        fi
        echo "$configurationRevision" ;;
    --hash|--revision) echo "lab" ;;
    --json) printf '{"nixosVersion":"%s","configurationRevision":"%s"}\n' "$nixosVersion" "$configurationRevision" ;;
    *) echo "$nixosVersion (Lab stand-in)" ;;
esac
SCRIPT

# The lab's systemd and nixos-rebuild: on NixOS these exist only in the system's sw/bin.
for tool in systemctl systemd-run journalctl shutdown reboot poweroff halt nixos-rebuild; do
    ln -s "/opt/lab/bin/$tool" "$out/sw/bin/$tool"
done

chmod +x "$out/activate" "$out/dry-activate" "$out/bin/switch-to-configuration" "$out/init" "$out/sw/bin/nixos-version"
