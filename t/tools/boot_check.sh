#!/usr/bin/env bash
# boot_check.sh IMAGE [FORMAT] EXPECTED_GEN — boot a disk image of the
# bootable guest (SPEC §14, t/peer/README.md "A disk that boots") under
# Debian's qemu-system-x86_64 and check what it prints on its first serial
# port.
#
#   IMAGE         a file (a raw image, a VMDK descriptor whose chain qemu
#                 follows: the peer's datastore files are read in place), or
#                 a qemu URL such as nbd+unix:///EXPORT?socket=PATH
#   FORMAT        raw, vmdk, qcow2, ... (default: vmdk for *.vmdk, else raw)
#   EXPECTED_GEN  the generation N the guest must print
#
# Exit 0 when the line "VMFERRY-BOOT-OK gen=EXPECTED_GEN" (exactly: gen=2
# does not pass for 20) appears within BOOT_TIMEOUT seconds (default 60);
# 1 otherwise, with what the serial port showed; 2 for a usage error, an
# unreadable image or no qemu-system-x86_64.
#
# The machine: `-accel tcg` (software emulation, no KVM needed), SeaBIOS,
# the image as the first IDE disk with snapshot=on (the guest's writes go
# to a temporary overlay: the image is never changed), no display, no
# network, -no-reboot, and QEMU's isa-debug-exit device so that the boot
# sector's exit write ends QEMU as soon as it has printed its line.
set -uo pipefail

usage() {
	echo "usage: boot_check.sh IMAGE [FORMAT] EXPECTED_GEN" >&2
	exit 2
}
case $# in
2) img=$1 fmt= gen=$2 ;;
3) img=$1 fmt=$2 gen=$3 ;;
*) usage ;;
esac
[[ $gen =~ ^[0-9]+$ ]] || usage
limit=${BOOT_TIMEOUT:-60}
[[ $limit =~ ^[0-9]+$ ]] || { echo "boot_check: BOOT_TIMEOUT=$limit is not a number of seconds" >&2; exit 2; }
qemu=$(command -v qemu-system-x86_64) ||
	{ echo "boot_check: qemu-system-x86_64 not found (apt-get install qemu-system-x86)" >&2; exit 2; }
case $img in
*://*) ;;
*) [ -r "$img" ] || { echo "boot_check: cannot read $img" >&2; exit 2; } ;;
esac
if [ -z "$fmt" ]; then
	case $img in *.vmdk) fmt=vmdk ;; *) fmt=raw ;; esac
fi

work=$(mktemp -d /tmp/vmferry-boot.XXXXXX)
qpid=
cleanup() {
	[ -z "$qpid" ] || kill "$qpid" 2>/dev/null
	[ -z "$qpid" ] || wait "$qpid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
serial=$work/serial
: >"$serial"

start=$(date +%s%N)
"$qemu" -machine pc -accel tcg -m 32 -nodefaults -display none -monitor none -no-reboot \
	-serial "file:$serial" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
	-drive "file=${img//,/,,},format=$fmt,if=ide,index=0,media=disk,snapshot=on" \
	</dev/null >"$work/qemu.out" 2>&1 &
qpid=$!

# Wait for a whole VMFERRY-BOOT line (its \r is there), QEMU's end, or
# the time limit.
end=$((start + limit * 1000000000))
while kill -0 "$qpid" 2>/dev/null; do
	grep -a '^VMFERRY-BOOT-' "$serial" | grep -q $'\r' && break
	[ "$(date +%s%N)" -lt $end ] || break
	sleep 0.1
done
if kill -0 "$qpid" 2>/dev/null; then kill "$qpid" 2>/dev/null; fi
wait "$qpid" 2>/dev/null
qpid=
secs=$(awk -v n="$(($(date +%s%N) - start))" 'BEGIN { printf "%.1f", n / 1e9 }')

line=$(tr -d '\r' <"$serial" | grep -a '^VMFERRY-BOOT-' | head -n1)
if [ "$line" = "VMFERRY-BOOT-OK gen=$gen" ]; then
	echo "boot_check: $img booted in ${secs}s: $line"
	exit 0
fi
echo "boot_check: $img did not print VMFERRY-BOOT-OK gen=$gen (qemu ran ${secs}s, at most ${limit}s)" >&2
if [ -s "$serial" ]; then
	echo "boot_check: the serial port showed:" >&2
	head -c 2000 "$serial" | tr -d '\r' | cat -v | sed 's/^/  | /' >&2
else
	echo "boot_check: the serial port showed nothing" >&2
fi
if [ -s "$work/qemu.out" ]; then
	echo "boot_check: qemu said:" >&2
	head -c 2000 "$work/qemu.out" | sed 's/^/  | /' >&2
fi
exit 1
