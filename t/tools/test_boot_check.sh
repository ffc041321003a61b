#!/usr/bin/env bash
# The boot helper (t/tools/boot_check.sh) against images whose answer is
# known: the peer's bootable guest (`vmferry-peer bootdisk`, the boot sector
# assembled from t/peer/boot/bootsector.s) passes for its own generation,
# raw and as a VMDK, and fails for any other — a neighbour, a longer number
# with the same digits first, a disk that does not boot, a broken
# generation sector — saying what the serial port showed.  The image is
# never changed by booting it.  Skips (77) without Debian's
# qemu-system-x86_64 (tools/setup installs qemu-system-x86).
: "${VMFERRY_SRC:?}"
. "$VMFERRY_SRC/t/integration/lib.sh" # ok, fail, a temp dir $T removed on exit
check=$SRC/t/tools/boot_check.sh
command -v qemu-system-x86_64 >/dev/null || skip_test "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
peer=$(VMFERRY_BUILD=$BIN "$SRC/tools/peer" --build-only) || fail "the peer does not build"
# expect RC WHAT CMD...: CMD exits RC; its output is in $T/out.
expect() {
	local want=$1 what=$2 rc=0
	shift 2
	"$@" >"$T/out" 2>&1 || rc=$?
	[ "$rc" = "$want" ] || fail "$what: exit $rc, not $want: $(cat "$T/out")"
	ok "$what"
}

"$peer" bootdisk -o "$T/g7.raw" -gen 7 -size 3000000 2>/dev/null || fail "vmferry-peer bootdisk failed"
sum=$(sha256sum <"$T/g7.raw")
expect 0 "a raw image of generation 7 boots and prints gen=7" "$check" "$T/g7.raw" 7
grep -q "VMFERRY-BOOT-OK gen=7" "$T/out" || fail "the pass does not name the line: $(cat "$T/out")"
expect 1 "expecting gen=8 on it fails" "$check" "$T/g7.raw" raw 8
grep -q "VMFERRY-BOOT-OK gen=7" "$T/out" || fail "the failure does not show what was printed: $(cat "$T/out")"
expect 1 "expecting gen=70 on it fails (whole lines only)" "$check" "$T/g7.raw" 70
[ "$(sha256sum <"$T/g7.raw")" = "$sum" ] || fail "booting changed the image"
ok "booting leaves the image unchanged"

qemu-img convert -f raw -O vmdk "$T/g7.raw" "$T/g7.vmdk" || fail "qemu-img convert to vmdk"
expect 0 "the same disk as a VMDK boots (format from the name)" "$check" "$T/g7.vmdk" 7

"$peer" bootdisk -o "$T/max.raw" -gen 4294967295 2>/dev/null || fail "bootdisk -gen 4294967295"
expect 0 "the largest generation prints in full" "$check" "$T/max.raw" raw 4294967295

cp "$T/g7.raw" "$T/bad.raw"
printf X | dd of="$T/bad.raw" bs=1 seek=512 conv=notrunc status=none
expect 1 "a broken generation sector fails" "$check" "$T/bad.raw" 7
grep -q "VMFERRY-BOOT-FAIL no generation sector" "$T/out" || fail "the guest's complaint is not shown: $(cat "$T/out")"

truncate -s 1M "$T/zero.raw"
BOOT_TIMEOUT=3 expect 1 "a disk that does not boot fails at the time limit" "$check" "$T/zero.raw" 1
grep -q "showed nothing" "$T/out" || fail "no word of an empty serial port: $(cat "$T/out")"

expect 2 "a missing image is a usage error" "$check" "$T/none.raw" 1
expect 2 "a generation that is not a number is a usage error" "$check" "$T/g7.raw" seven
