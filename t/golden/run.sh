#!/usr/bin/env bash
# Golden files for the config checker.
#
#   run.sh [--update] VMFERRYD GOLDEN_DIR
#
# valid/NAME/   must load: `vmferryd -n -p -c valid/NAME` exits 0 and its
#               stdout equals valid/NAME.out (stderr must be empty).
# broken/NAME/  must fail: `vmferryd -n -c broken/NAME` exits non-zero and
#               its stderr equals broken/NAME.err.  If broken/NAME.out
#               exists, `vmferryd -n -p` must also print exactly that (what
#               the good files still give while the broken one is ignored).
#
# Paths in messages are relative to GOLDEN_DIR (we cd there), so the
# expectations do not depend on where the tree is checked out.
# --update rewrites the expectations from the current output; review the
# diff before committing.
set -u

update=0
if [ "${1:-}" = "--update" ]; then
	update=1
	shift
fi
if [ $# -ne 2 ]; then
	echo "usage: $0 [--update] VMFERRYD GOLDEN_DIR" >&2
	exit 2
fi
bin=$1
dir=$2
case $bin in
/*) ;;
*) bin=$PWD/$bin ;;
esac
cd "$dir" || exit 2
if [ ! -x "$bin" ]; then
	echo "$0: $bin is not executable" >&2
	exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The loader reads password_env variables; keep the environment fixed.
export TZ=UTC LC_ALL=C
export VMFERRY_GOLDEN_SECRET=golden-env-secret
unset VMFERRY_GOLDEN_UNSET

fail=0
count=0

# compare NAME EXPECTED ACTUAL
compare() {
	if [ $update -eq 1 ]; then
		cp "$3" "$2"
		return 0
	fi
	if [ ! -f "$2" ]; then
		echo "FAIL $1: missing $2 (run with --update to create it)"
		echo "---- actual output:"
		cat "$3"
		return 1
	fi
	if ! diff -u --label "$2 (expected)" --label "$2 (actual)" "$2" "$3"; then
		echo "FAIL $1: output differs from $2"
		return 1
	fi
	return 0
}

for d in valid/*/; do
	[ -d "$d" ] || continue
	name=$(basename "$d")
	count=$((count + 1))
	"$bin" -n -p -c "valid/$name" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	ok=1
	if [ $rc -ne 0 ]; then
		echo "FAIL valid/$name: exit status $rc, expected 0"
		ok=0
	fi
	if [ -s "$tmp/err" ]; then
		echo "FAIL valid/$name: unexpected errors:"
		cat "$tmp/err"
		ok=0
	fi
	compare "valid/$name" "valid/$name.out" "$tmp/out" || ok=0
	[ $ok -eq 1 ] || fail=$((fail + 1))
done

for d in broken/*/; do
	[ -d "$d" ] || continue
	name=$(basename "$d")
	count=$((count + 1))
	ok=1
	"$bin" -n -c "broken/$name" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ $rc -eq 0 ]; then
		echo "FAIL broken/$name: exit status 0, expected non-zero"
		ok=0
	fi
	if [ ! -s "$tmp/err" ]; then
		echo "FAIL broken/$name: no error message"
		ok=0
	fi
	compare "broken/$name" "broken/$name.err" "$tmp/err" || ok=0
	if [ -f "broken/$name.out" ]; then
		"$bin" -n -p -c "broken/$name" >"$tmp/out" 2>/dev/null
		rc=$?
		if [ $rc -eq 0 ]; then
			echo "FAIL broken/$name: -p exit status 0, expected non-zero"
			ok=0
		fi
		compare "broken/$name (-p)" "broken/$name.out" "$tmp/out" || ok=0
	fi
	[ $ok -eq 1 ] || fail=$((fail + 1))
done

# Expectations without a case are stale.
for f in valid/*.out broken/*.err broken/*.out; do
	[ -f "$f" ] || continue
	if [ ! -d "${f%.*}" ]; then
		echo "FAIL $f: no case directory ${f%.*}/"
		fail=$((fail + 1))
	fi
done

if [ $count -eq 0 ]; then
	echo "no golden cases found in $dir"
	exit 1
fi
if [ $update -eq 1 ]; then
	echo "updated $count golden cases"
	exit 0
fi
if [ $fail -ne 0 ]; then
	echo "$fail of $count golden cases failed"
	exit 1
fi
echo "all $count golden cases passed"
exit 0
