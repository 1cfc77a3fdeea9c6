#!/usr/bin/env bash
# Makes `qemu-system-x86_64` available for the QEMU driver's tests (design §6).
#
# The plain way is Debian's `qemu-system-x86`. Some build machines carry a newer `qemu-utils`
# from backports, which Debian's `qemu-system-common` refuses to sit beside; there the three
# QEMU system packages are unpacked into a private prefix instead (their library dependencies
# are installed normally) and a small wrapper on PATH points QEMU at its firmware. Nothing
# already installed is removed or downgraded.
set -euo pipefail

# CORRAL_QEMU_FORCE_UNPACK=1 takes the unpacking path even where apt could install (to test it).
force="${CORRAL_QEMU_FORCE_UNPACK:-0}"
if [ "$force" != 1 ] && command -v qemu-system-x86_64 >/dev/null; then
    exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# --no-remove: apt would otherwise "solve" the conflict by removing the newer qemu-utils.
if [ "$force" != 1 ] && $SUDO apt-get install -y -qq --no-remove --no-install-recommends qemu-system-x86 >/dev/null 2>&1; then
    exit 0
fi

prefix="${CORRAL_QEMU_PREFIX:-/opt/corral-qemu}"
bin_dir="${CORRAL_QEMU_BIN_DIR:-/usr/local/bin}"
pkgs=(qemu-system-x86 qemu-system-common qemu-system-data)
echo "install-qemu: qemu-system-x86 does not install here; unpacking it into $prefix" >&2
# Their real dependencies, minus the QEMU packages themselves and virtual names.
mapfile -t deps < <(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "${pkgs[@]}" \
    | awk '$1 == "Depends:" || $1 == "|Depends:" {print $2}' \
    | grep -v '^<' | grep -v '^qemu-' | sort -u)
$SUDO apt-get install -y -qq --no-install-recommends "${deps[@]}" seabios ipxe-qemu >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq "${pkgs[@]}")
$SUDO mkdir -p "$prefix"
for deb in "$tmp"/*.deb; do
    $SUDO dpkg-deb -x "$deb" "$prefix"
done
$SUDO tee "$bin_dir/qemu-system-x86_64" >/dev/null <<WRAP
#!/bin/sh
# Written by Corral's scripts/install-qemu.sh: QEMU unpacked in $prefix, firmware from Debian.
exec $prefix/usr/bin/qemu-system-x86_64 -L $prefix/usr/share/qemu -L /usr/share/seabios -L /usr/lib/ipxe/qemu -L /usr/share/qemu "\$@"
WRAP
$SUDO chmod 755 "$bin_dir/qemu-system-x86_64"
"$bin_dir/qemu-system-x86_64" --version | head -1 >&2
