#!/usr/bin/env bash
# Backup verification (SPEC §10 `verify`): a rule over two VMs, bak01 with
# two disks (a full, a guest write in one chunk, an incremental) and bak02
# (a full).  `verify` finds every point sound and re-reads every distinct
# chunk; then one byte of a chunk file that both points of bak01 use is
# flipped: `verify` exits 1 naming that chunk and exactly the points that
# t/tools/repo_read.py (the independent reader) finds using it, moves it
# to damaged/, warns in bak01's log and counts an unviewed error; the
# next incremental of bak01 logs that it reads those bytes from the source
# again (and reads them), after which `verify` is clean and every point
# reads back equal to the source as it was at that point.  A chunk file
# that goes missing and is then changed in part by the guest is read
# whole by the next backup (its parent's copy is gone); the older points
# that used it stay named.  `points` lists
# a backup's points; verify refuses an unknown rule, a replication rule,
# an unknown VM, a point that is no number or not there.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"

MiB=1048576
CHUNK=$((4 * MiB))
cap0=$((12 * MiB))
cap1=$((5 * MiB + 512))
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"bak01","host":"H0","power":"on","disks":[{"capacity":$cap0,"seed":61,"allocated":0.6},{"capacity":$cap1,"seed":62,"allocated":0.5}]},
        {"name":"bak02","host":"H0","power":"on","disks":[{"capacity":$((3 * MiB)),"seed":63,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
bak_rule bak "bak01 bak02" "fast_transfer: true"
# A replication rule, to be refused by verify (its VM need not exist).
rep_rule rep nosuch "auto_sync: false" 2
start_daemon "$CONF"
wait_job bak bak01 idle 30
wait_job bak bak02 idle 30

repo=$(BAK_REPO)
declare -A at # at[SEQ.DISK]: the source's hash of bak01 when point SEQ was made
point() { # point VM MODE SEQ: a backup of VM, waited for
	assert_match "$(ctl run bak "$1" --mode "$2")" "$1: (idle|complete) -> queued" "run bak $1 --mode $2"
	wait_job bak "$1" complete 120
	assert_eq "$(repo_points bak "$1")" "$(seq -s, 1 "$3")" "$1: point $3 ($2) is in the repository"
	if [ "$1" = bak01 ]; then
		for d in 0 1; do at[$3.$d]=$(src_sha bak01 $d); done
	fi
}
# verify ARGS...: vmferryctl verify's output in $out, its status in $rc.
verify() {
	set +e
	out=$(ctl verify "$@" 2>&1)
	rc=$?
	set -e
}
# The points of rule bak (as rule/vm/seq) that use chunk ID, by the reader.
users() {
	local p
	"$REPO_READ" "$repo" points bak | while read -r p; do
		if "$REPO_READ" "$repo" ids bak "$(cut -d/ -f2 <<<"$p")" "$(cut -d/ -f3 <<<"$p")" |
			awk -v id="$1" '$3 == id { n++ } END { exit n == 0 }'; then
			echo "$p"
		fi
	done | paste -sd' ' -
}
# Every distinct chunk the points of rule bak use (the zero chunk is none).
all_chunks() {
	local p
	"$REPO_READ" "$repo" points bak | while read -r p; do
		"$REPO_READ" "$repo" ids bak "$(cut -d/ -f2 <<<"$p")" "$(cut -d/ -f3 <<<"$p")"
	done | awk '$3 !~ /^0+$/ { print $3 }' | sort -u
}

# shared_chunk NEWER OLDER [NOT]: a chunk (not the zero chunk, not NOT)
# that bak01's points NEWER and OLDER both use, by the reader: its id in
# victim, where NEWER has it in vdisk and vidx, its length in vlen.
shared_chunk() {
	victim=$(comm -12 <("$REPO_READ" "$repo" ids bak bak01 "$1" | awk '$3 !~ /^0+$/ { print $3 }' | sort -u) \
		<("$REPO_READ" "$repo" ids bak bak01 "$2" | awk '{ print $3 }' | sort -u) |
		awk -v not="${3:-}" '$0 != not && !n { print; n = 1 }')
	[ -n "$victim" ] || fail "bak01's points $1 and $2 share no chunk${3:+ but $3}"
	read -r vdisk vidx _ < <("$REPO_READ" "$repo" ids bak bak01 "$1" | awk -v id="$victim" '$3 == id && !n { print; n = 1 }')
	local cap=$cap1
	[ "$vdisk" != 0 ] || cap=$cap0
	vlen=$((cap - vidx * CHUNK < CHUNK ? cap - vidx * CHUNK : CHUNK))
}

point bak01 full 1
point bak02 full 1
# One chunk of bak01 changes (disk 0, chunk 1); the others stay as they are.
gwrite "{\"vm\":\"bak01\",\"disk\":0,\"offset\":$((CHUNK + 8192)),\"length\":65536,\"seed\":201}" >/dev/null
point bak01 incremental 2

# ---- points ----
out=$(ctl points bak bak01)
assert_match "$(head -n1 <<<"$out")" "^POINT +TIME +MODE +PARENT +BYTES-READ +BYTES-STORED +STATE$" "points: a backup's table"
assert_eq "$(awk 'NR > 1 { print $NF }' <<<"$out" | paste -sd, -)" "complete,complete" "points: both complete"
rows=$(awk 'NR > 1 { print $1, $4, $5 }' <<<"$out" | paste -sd';' -)
assert_eq "$rows" "1 full -;2 incremental 1" "points: the two points of bak01, their modes and parents"
want=$(ctl --json show bak bak01 | jq -r '[.details.points[] | "\(.point) \(.bytes_read) \(.bytes_stored)"] | join(";")')
assert_eq "$(awk 'NR > 1 { print $1, $6, $7 }' <<<"$out" | paste -sd';' -)" "$want" "points: bytes read and stored as show's details"
[ "$(awk 'NR == 3 { print $6 }' <<<"$out")" -le $((CHUNK + 65536)) ] && ok "points: the incremental read one chunk at most" ||
	fail "points: the incremental read $(awk 'NR == 3 { print $6 }' <<<"$out") bytes"

# ---- a sound repository ----
verify bak
assert_eq "$rc" 0 "verify bak: exit 0 when every chunk is sound"
assert_match "$out" "^bak: 3 points verified, [0-9]+ chunks .* re-read: all sound$" "verify bak: a summary line"
json=$(ctl --json verify bak)
nchunks=$(all_chunks | wc -l)
assert_eq "$(jq -r '"\(.points) \(.chunks) \(.damaged | length)"' <<<"$json")" "3 $nchunks 0" \
	"verify --json: 3 points, every distinct chunk the reader finds ($nchunks), none damaged"

# ---- one flipped byte ----
# A chunk of bak01's newest point that its first point uses too.
shared_chunk 2 1
file="$repo/chunks/${victim:0:2}/$victim"
[ -f "$file" ] || fail "chunk $victim has no file $file"
want_users=$(users "$victim")
assert_eq "$want_users" "bak/bak01/1 bak/bak01/2" "the reader finds chunk $victim (disk $vdisk, chunk $vidx) in both points of bak01"
/usr/bin/python3 - "$file" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(100)
    b = f.read(1)
    f.seek(100)
    f.write(bytes([b[0] ^ 0x01]))
PY
for s in 1 2; do
	if "$REPO_READ" "$repo" check bak bak01 $s 2>"$T/err" >/dev/null; then
		fail "repo_read.py check of point $s passes with chunk $victim damaged"
	fi
	assert_match "$(cat "$T/err")" "chunk $victim" "repo_read.py check of point $s fails on chunk $victim"
done

verify bak bak02
assert_eq "$rc" 0 "verify bak bak02: bak02's points do not use the damaged chunk"
[ -f "$file" ] && ok "a verify of another VM leaves the chunk where it is" || fail "verify bak bak02 moved chunk $victim"

verify bak
assert_eq "$rc" 1 "verify bak: exit 1 with a damaged chunk"
assert_match "$(head -n1 <<<"$out")" "^bak: 3 points verified, [0-9]+ chunks .* re-read: 1 damaged$" "verify bak: the summary counts it"
line=$(grep "^chunk $victim " <<<"$out" || true)
assert_match "$line" "^chunk $victim used by bak/bak01/1, bak/bak01/2: damaged: " \
	"verify bak names the chunk and the points that use it"
named=$(sed -E 's/^chunk [0-9a-f]+ used by ([^:]*):.*/\1/; s/, / /g' <<<"$line")
assert_eq "$named" "$want_users" "verify names exactly the points the reader finds using chunk $victim"
assert_eq "$(grep -c '^chunk ' <<<"$out")" 1 "verify names one damaged chunk"
[ ! -e "$file" ] && [ -f "$repo/damaged/$victim" ] && ok "the damaged chunk was moved to damaged/$victim" ||
	fail "chunk $victim was not moved to damaged/"
assert_eq "$(ctl points bak bak01 | awk 'NR > 1 { print $1 "=" $NF }' | paste -sd, -)" "1=damaged,2=damaged" \
	"points marks the points that use the chunk damaged"
assert_eq "$(ctl points bak bak02 | awk 'NR > 1 { print $NF }' | paste -sd, -)" "complete" "... and bak02's point not"

set +e
json=$(ctl --json verify bak)
rc=$?
set -e
assert_eq "$rc" 1 "verify --json: exit 1 with a damaged chunk"
assert_eq "$(jq -r '.damaged | map("\(.chunk) \(.why | test("missing")) \([.points[] | "\(.rule)/\(.vm)/\(.point)"] | join(" "))") | join(";")' <<<"$json")" \
	"$victim true $want_users" "verify --json: the chunk (missing now), the points that use it"

verify bak bak01 --point 1
assert_eq "$rc" 1 "verify bak bak01 --point 1: exit 1"
assert_match "$(grep '^chunk ' <<<"$out")" "^chunk $victim used by bak/bak01/1: " "verify --point 1 names the chunk and point 1 only"
assert_match "$out" "^bak: 1 points verified" "verify --point 1 verifies one point"

log=$(ctl log bak bak01 -n 100)
assert_match "$log" "warning +verify: chunk $victim: damaged: .*; used by points 1, 2; the next backup that reads those bytes stores the chunk again" \
	"bak01's log warns of the damaged chunk and its points"
assert_nomatch "$(ctl log bak bak02 -n 100)" "verify:" "bak02's log has no verify warning"
unviewed=$(ctl --json stats bak | jq -r '[.jobs[] | "\(.vm)=\(.unviewed_errors > 0)"] | join(",")')
assert_eq "$unviewed" "bak01=true,bak02=false" "bak01 has unviewed errors, bak02 none"

# ---- refusals ----
refused() { # refused WHAT PATTERN ARGS...: verify ARGS fails with PATTERN
	local what=$1 pat=$2
	shift 2
	verify "$@"
	assert_eq "$rc" 1 "$what: exit 1"
	assert_match "$out" "$pat" "$what: $pat"
}
refused "verify of an unknown rule" "no backup rule named nosuch" nosuch
refused "verify of a replication rule" "rule rep is a replication rule: verify applies to backup rules" rep
refused "verify of a VM the rule does not have" "rule bak has no VM ghost" bak ghost
refused "verify --point x" "--point x is not a restore point's number" bak bak01 --point x
refused "verify --point 0" "--point 0 is not a restore point's number" bak bak01 --point 0
refused "verify --point without a VM" "--point needs a VM" bak --point 1
refused "verify of a point that is not there" "no point bak/bak01/9" bak bak01 --point 9

# ---- the next backup reads the bytes again ----
stats_reset
point bak01 incremental 3
assert_match "$(ctl log bak bak01 -n 200)" "disk $vdisk: 1 chunks of point 2 are not in the repository \\(set aside as damaged, or lost\\): read from the source again" \
	"the incremental logs that the damaged chunk is read from the source again"
read=$(flat_bytes bak01)
[ "$read" -ge "$vlen" ] && [ "$read" -le $((vlen + 2 * 65536)) ] &&
	ok "the incremental read the chunk's $vlen bytes again ($read bytes read, nothing else changed)" ||
	fail "the incremental read $read bytes; the damaged chunk holds $vlen"
[ -f "$file" ] && ok "chunk $victim is stored again" || fail "chunk $victim is not in chunks/ after the backup"

verify bak
assert_eq "$rc" 0 "verify bak after the backup: exit 0"
assert_match "$out" "^bak: 4 points verified, .* all sound$" "verify bak after the backup: all sound"
assert_eq "$(ctl points bak bak01 | awk 'NR > 1 { print $NF }' | paste -sd, -)" "complete,complete,complete" \
	"a verify that finds them sound marks the points complete again"
for s in 1 2 3; do
	"$REPO_READ" "$repo" check bak bak01 $s >/dev/null && ok "repo_read.py check of point $s passes" ||
		fail "repo_read.py check of point $s"
	for d in 0 1; do
		src=$s
		[ $s = 3 ] && src=2 # nothing was written since point 2
		assert_eq "$(repo_sha bak bak01 $s $d)" "${at[$src.$d]}" "point $s disk $d reads back as the source was at point $src"
	done
done
bak_point_equal bak bak02 1 1 "bak02's full"

# ---- a damaged chunk that the guest then changes in part ----
# The next backup cannot complete that chunk from its parent's: it reads
# it whole.  The older points that used it cannot heal (their bytes are no
# longer in the source) and stay named.
shared_chunk 3 1 "$victim"
victim2=$victim
want_users=$(users "$victim2")
assert_eq "$want_users" "bak/bak01/1 bak/bak01/2 bak/bak01/3" "the reader finds chunk $victim2 (disk $vdisk, chunk $vidx) in every point of bak01"
rm "$repo/chunks/${victim2:0:2}/$victim2"
verify bak bak01
assert_eq "$rc" 1 "verify bak bak01: exit 1 with a chunk file gone"
assert_match "$(grep '^chunk ' <<<"$out")" "^chunk $victim2 used by bak/bak01/1, bak/bak01/2, bak/bak01/3: missing$" \
	"verify names the missing chunk and every point that uses it"
gwrite "{\"vm\":\"bak01\",\"disk\":$vdisk,\"offset\":$((vidx * CHUNK + 65536)),\"length\":65536,\"seed\":202}" >/dev/null
stats_reset
point bak01 incremental 4
assert_match "$(ctl log bak bak01 -n 100 | grep -A1000 'restore point 4:')" \
	"disk $vdisk: 1 chunks of point 3 are not in the repository .*: read from the source again" \
	"the incremental logs that the missing chunk is read from the source again"
read=$(flat_bytes bak01)
[ "$read" -ge "$vlen" ] && [ "$read" -le $((vlen + 2 * 65536)) ] &&
	ok "the incremental read the partly changed chunk whole ($read bytes read for its $vlen)" ||
	fail "the incremental read $read bytes; the partly changed chunk holds $vlen"
"$REPO_READ" "$repo" check bak bak01 4 >/dev/null && ok "repo_read.py check of point 4 passes" ||
	fail "repo_read.py check of point 4"
bak_point_equal bak bak01 4 2 "the incremental after a lost chunk"
verify bak
assert_eq "$rc" 1 "verify bak: the older points still miss the chunk"
assert_eq "$(grep '^chunk ' <<<"$out")" "chunk $victim2 used by bak/bak01/1, bak/bak01/2, bak/bak01/3: missing" \
	"verify names the chunk and the three older points, not point 4"
stop_daemon
echo "1..$NTEST"
