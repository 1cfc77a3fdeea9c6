#!/usr/bin/env bash
# Builds the tiny test guest for the QEMU driver (docs/dev/qemu-driver.md) into a directory
# (`$1`, default `target/guest`), from Debian packages only:
#
#   vmlinuz              the `linux-image-cloud-amd64` kernel, unchanged
#   initrd.img           a gzipped newc cpio: `busybox-static` as PID 1 (busybox init) plus the
#                        few kernel modules the cloud kernel does not build in (virtio-pci,
#                        virtio-blk, virtio-net, the ACPI button, evdev)
#   debian-tiny.qcow2    two 64 MiB base disks (qcow2 over an ext4 made with `mke2fs -d`) that
#   debian-tiny-b.qcow2  differ only in `/image-name`, so a test can tell which one a VM runs
#
# The guest prints to its serial console (ttyS0), in this order:
#   corral-guest: init                           as soon as its init runs (the KVM probe's marker)
#   corral-guest: image=<name>                   after mounting /dev/vda (`none` without a disk)
#   corral-guest: up vcpus=N mem_kb=N boot=N boot_id=UUID   when it serves HTTP
# `boot` counts boots of that disk (a file on it), so a restored suspend shows no new boot.
# Then it serves http://10.0.2.15:80/ (busybox httpd: image name, hostname, boot count, boot id),
# powers off on the ACPI power button (prints `corral-guest: power button`, then poweroff) and
# reboots on Ctrl-Alt-Del (busybox init `::ctrlaltdel:`), printing `corral-guest: going down`
# on both ways down. The hostname comes from `corral.hostname=` on the kernel command line;
# `corral.debug` there makes it print its modules, /dev and the end of dmesg after mounting.
#
# Cached: nothing is rebuilt while all outputs exist and are newer than this script. A build
# takes ~5 s here (two package downloads, ~28 MB, and a few small files); the guest reaches `up`
# in ~3 s under TCG on an idle machine. Needs apt-get (downloads need no root), dpkg-deb, cpio, gzip, mke2fs and
# qemu-img; missing tools are installed with apt-get when running as root.
set -euo pipefail

script="$(readlink -f "$0")"
out="${1:-target/guest}"
mkdir -p "$out"
out="$(readlink -f "$out")"
outputs=(vmlinuz initrd.img debian-tiny.qcow2 debian-tiny-b.qcow2)

fresh=1
for f in "${outputs[@]}"; do
    if [ ! -s "$out/$f" ] || [ ! "$out/$f" -nt "$script" ]; then fresh=0; fi
done
if [ "$fresh" = 1 ]; then
    echo "guest-image: $out is up to date"
    exit 0
fi

# Tools. On a bare CI machine (root) they are installed; elsewhere their absence is an error.
need=()
command -v cpio >/dev/null || need+=(cpio)
command -v mke2fs >/dev/null || [ -x /sbin/mke2fs ] || need+=(e2fsprogs)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v gzip >/dev/null || need+=(gzip)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "guest-image: missing ${need[*]} (install them, or run as root)" >&2
        exit 1
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
PATH="$PATH:/sbin:/usr/sbin"

work="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Packages: the kernel meta package names the versioned image package it depends on.
download() { (cd "$work/deb" && apt-get download -q "$@" 2>&1 | grep -v 'unsandboxed' || true); }
mkdir -p "$work/deb" "$work/pkg"
download linux-image-cloud-amd64 busybox-static
if ! ls "$work/deb"/linux-image-cloud-amd64_*.deb >/dev/null 2>&1; then
    # A bare machine may have no package lists yet.
    [ "$(id -u)" -eq 0 ] && apt-get update -q
    download linux-image-cloud-amd64 busybox-static
fi
meta="$(ls "$work/deb"/linux-image-cloud-amd64_*.deb)"
kpkg="$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)"
[ -n "$kpkg" ] || { echo "guest-image: cannot tell the kernel package from $meta" >&2; exit 1; }
download "$kpkg"
for d in "$work/deb"/linux-image-[0-9]*.deb "$work/deb"/busybox-static_*.deb; do
    dpkg-deb -x "$d" "$work/pkg"
done
kver="$(ls "$work/pkg/lib/modules" | head -n1)"
cp "$work/pkg/boot/vmlinuz-$kver" "$work/vmlinuz"

# The initramfs.
root="$work/root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,mnt/disk,www,tmp,lib/modules,root}
cp "$work/pkg/bin/busybox" "$root/bin/busybox"
ln -s bin/busybox "$root/init"
# Every applet as a link, so /bin/sh exists before anything runs.
for a in $("$root/bin/busybox" --list-full); do
    mkdir -p "$root/$(dirname "$a")"
    [ -e "$root/$a" ] || ln -s /bin/busybox "$root/$a"
done
# Load order matters: the cloud kernel has no modules.dep, and busybox insmod resolves nothing.
mods="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk failover net_failover virtio_net button evdev"
for m in $mods; do
    f="$(find "$work/pkg/lib/modules/$kver" -name "$m.ko" | head -n1)"
    if [ -n "$f" ]; then cp "$f" "$root/lib/modules/"; fi
done
echo "$mods" > "$root/lib/modules/order"

cat > "$root/etc/inittab" <<'INITTAB'
::sysinit:/etc/rcS
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/rc.shutdown
INITTAB

cat > "$root/etc/rcS" <<'RCS'
#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "corral-guest: init"
for m in $(cat /lib/modules/order); do
    [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko 2>/dev/null
done
# virtio-blk probes asynchronously on some kernels: give the disk a moment.
i=0
while [ ! -b /dev/vda ] && [ $i -lt 20 ] && [ -d /sys/bus/virtio/devices ] \
    && grep -qs 0x0002 /sys/bus/virtio/devices/*/device; do
    sleep 0.1; i=$((i + 1))
done
image=none
boot=0
if [ -b /dev/vda ] && mount -t ext4 /dev/vda /mnt/disk; then
    image="$(cat /mnt/disk/image-name 2>/dev/null || echo unknown)"
    boot="$(cat /mnt/disk/boot-count 2>/dev/null || echo 0)"
    boot=$((boot + 1))
    echo "$boot" > /mnt/disk/boot-count
    sync
fi
echo "corral-guest: image=$image"
if grep -q corral.debug /proc/cmdline; then lsmod; ls /dev; dmesg | tail -n 40; fi
name=corral-guest
for a in $(cat /proc/cmdline); do
    case "$a" in corral.hostname=*) name="${a#corral.hostname=}" ;; esac
done
hostname "$name"
ip link set lo up
if ip link show eth0 >/dev/null 2>&1; then
    ip addr add 10.0.2.15/24 dev eth0
    ip link set eth0 up
    ip route add default via 10.0.2.2
fi
boot_id="$(cat /proc/sys/kernel/random/boot_id)"
cat > /www/index.html <<PAGE
<html><body><pre>
corral-guest
image=$image
hostname=$name
boot=$boot
boot_id=$boot_id
</pre></body></html>
PAGE
httpd -p 80 -h /www
# The ACPI power button (button.ko) is an input device: its first event means "pressed".
# Busybox acpid was tried first and did not react to QEMU's system_powerdown; a blocking read
# of one event is simpler and needs nothing else.
for d in /sys/class/input/input*; do
    [ "$(cat "$d/name" 2>/dev/null)" = "Power Button" ] || continue
    for e in "$d"/event*; do
        [ -e "$e" ] || continue
        (dd if="/dev/input/${e##*/}" of=/dev/null bs=24 count=1 2>/dev/null \
            && echo "corral-guest: power button" && poweroff) &
    done
done
vcpus="$(nproc)"
mem_kb="$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)"
echo "corral-guest: up vcpus=$vcpus mem_kb=$mem_kb boot=$boot boot_id=$boot_id"
RCS

cat > "$root/etc/rc.shutdown" <<'SHUT'
#!/bin/sh
echo "corral-guest: going down"
sync
umount /mnt/disk 2>/dev/null || mount -o remount,ro /mnt/disk 2>/dev/null
true
SHUT

chmod 755 "$root/etc/rcS" "$root/etc/rc.shutdown"
(cd "$root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -9) > "$work/initrd.img"

# The base disks: identical but for their name.
for name in debian-tiny debian-tiny-b; do
    stage="$work/disk-$name"
    mkdir -p "$stage"
    echo "$name" > "$stage/image-name"
    echo 0 > "$stage/boot-count"
    rm -f "$work/$name.raw"
    mke2fs -q -F -t ext4 -L "$name" -d "$stage" -E root_owner=0:0 "$work/$name.raw" 64M
    qemu-img convert -f raw -O qcow2 "$work/$name.raw" "$work/$name.qcow2"
done

for f in "${outputs[@]}"; do mv -f "$work/$f" "$out/$f"; done
echo "guest-image: built $out (kernel $kver)"
