#!/usr/bin/env bash
# The independent reader (t/tools/repo_read.py, written from
# docs/REPOSITORY.md) agrees with the writer: a repository made through
# drivers/repo.h by repo_fixture gives back, read by the reader, exactly
# the disk images the fixture kept; a flipped byte in a chunk or a
# manifest is found and named.  Skips (77) without Debian's python3 and
# python3-zstandard (tools/setup installs them).
set -euo pipefail

: "${REPO_FIXTURE:?}" "${VMFERRY_SRC:?}"
py=/usr/bin/python3
reader="$VMFERRY_SRC/t/tools/repo_read.py"
if ! "$py" -c 'import zstandard' 2>/dev/null; then
	echo "SKIP: $py with python3-zstandard not found (apt-get install python3-zstandard)"
	exit 77
fi
dir=$(mktemp -d /tmp/vmferry-repo-read.XXXXXX)
trap 'rm -rf "$dir"' EXIT
pass=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
die() { echo "FAIL: $*" >&2; echo "$pass passed, 1 failed"; exit 1; }
# flip FILE OFFSET: one bit of the byte at OFFSET changed in place.
flip() {
	"$py" - "$1" "$2" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)
    f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0x20]))
PY
}

"$REPO_FIXTURE" "$dir"
repo=$dir/repo
vm="web 01 ü"

got=$("$py" "$reader" "$repo" points)
[ "$got" = "$(printf 'r1/%s/1\nr1/%s/2' "$vm" "$vm")" ] || die "points: $got"
ok "the reader lists the two points"

# ids: one line per chunk of every disk, as the images' sizes say.
want=0
for disk in 0 1; do
	size=$(stat -c %s "$dir/want-2-$disk.raw")
	want=$((want + (size + 4194303) / 4194304))
done
[ "$("$py" "$reader" "$repo" ids r1 "$vm" 2 | wc -l)" = $want ] || die "ids of point 2: not $want lines"
ok "ids lists every chunk of point 2 ($want)"

for seq in 1 2; do
	for disk in 0 1; do
		"$py" "$reader" "$repo" image r1 "$vm" $seq $disk "$dir/got.raw" || die "image $seq/$disk"
		cmp "$dir/got.raw" "$dir/want-$seq-$disk.raw" || die "image $seq/$disk differs from what was written"
	done
	"$py" "$reader" "$repo" check r1 "$vm" $seq >/dev/null || die "check $seq"
done
ok "both points' disks read back byte for byte, every chunk's id checked"

mode=$("$py" "$reader" "$repo" manifest r1 "$vm" 2 | "$py" -c 'import json,sys; m=json.load(sys.stdin); print(m["mode"], m["parent"], m["disks"][1]["capacity"], m["config"]["name"])')
[ "$mode" = "incremental 1 3145735 $vm" ] || die "manifest of point 2: $mode"
ok "the manifest reads as written"

# A byte flipped in the payload of a chunk.
chunk=$(find "$repo/chunks" -type f -size +1k | sort | head -n 1)
id=$(basename "$chunk")
flip "$chunk" 200
failed=0
for seq in 1 2; do
	# ids lists the chunk exactly in the points whose check fails.
	uses=$("$py" "$reader" "$repo" ids r1 "$vm" $seq | awk -v id="$id" '$3 == id' | wc -l)
	if "$py" "$reader" "$repo" check r1 "$vm" $seq 2>"$dir/err"; then
		[ "$uses" = 0 ] || die "point $seq uses chunk $id ($uses times), yet its check passes"
		continue
	fi
	[ "$uses" -gt 0 ] || die "point $seq fails its check but ids does not list chunk $id"
	grep -q "chunk $id" "$dir/err" || die "the damaged chunk is not named: $(cat "$dir/err")"
	failed=$((failed + 1))
done
[ $failed -ge 1 ] || die "a flipped byte in chunk $id went unnoticed"
ok "a flipped byte in chunk $id is found and named; ids lists it in exactly the points that fail"

# A byte flipped in a manifest.
flip "$repo/points/r1/$vm/1/manifest.json" 120
if "$py" "$reader" "$repo" manifest r1 "$vm" 1 >/dev/null 2>"$dir/err"; then
	die "a flipped byte in a manifest went unnoticed"
fi
grep -q "checksum mismatch" "$dir/err" || die "manifest: $(cat "$dir/err")"
ok "a flipped byte in a manifest is found"
echo "$pass passed, 0 failed"
