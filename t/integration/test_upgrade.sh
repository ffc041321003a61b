#!/usr/bin/env bash
# An upgrade from the previous version (git commit 1851888) on a state
# directory that version wrote.  Since then three names carry the job's
# kind: engine snapshots (vmferry-<rule>-<n> -> vmferry-<kind>-<rule>-<n>),
# staging directories (temp_dir/<rule>/<vm> -> temp_dir/<kind>/<rule>/<vm>)
# and the migration record (version 2 -> 3).
#
# 1. The previous vmferryd (built from git once, into $BIN/upgrade-1851888,
#    and reused) runs a migration (https transport: staging images) of a VM
#    with two disks and is killed (-9) mid-transfer, after a checkpoint was
#    recorded.  Left behind: a snapshot named the old way on the source, a
#    version 2 record, a staging directory temp_dir/<rule>/<vm>.  Two more
#    jobs are ready (full copy done) by then, their version 2 records hold
#    the changeIds their catch-ups start from: upr/rdy01, and
#    migration/migration, whose old directory temp_dir/migration/migration
#    holds its new one temp_dir/migration/migration/migration.
# 2. A leftover snapshot named the old way that the job did not record
#    (vmferry-<rule>-7) and a backup rule's snapshot (vmferry-backup-<rule>-3)
#    appear on the source, and the guest writes.
# 3. This vmferryd starts on the same state directory and configuration:
#    the job resumes at its checkpoint in the moved staging image, removes
#    the old-named leftover and leaves the backup's snapshot alone, reaches
#    ready.  The test removes the backup's snapshot (the engine cannot read
#    its own snapshot's disk over another snapshot) and the guest writes;
#    开始迁移 completes the job with the source's bytes, one target VM, no
#    snapshot left and no staging directory.  The catch-ups of the ready
#    jobs read only the changes since the old version's full copy, into the
#    staging images it left.
#
# Skipped (exit 77) when git or the old commit is not available.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

# skip_test is lib.sh's once skips exit 77 everywhere; until then, the same.
declare -F skip_test >/dev/null || skip_test() {
	echo "ok $((NTEST + 1)) # SKIP $*"
	exit 77
}

OLD_REV=1851888
PROBE=${VMFERRY_PROBE:-$BIN/t/integration/vsprobe}
RULE=upg
VM=big01
NEWBIN=$BIN

# ---- the previous version, built from git (once) ----

command -v git >/dev/null 2>&1 || skip_test "git is not installed"
git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1 || skip_test "$SRC is not a git checkout"
OLD_FULL=$(git -C "$SRC" rev-parse -q --verify "$OLD_REV^{commit}" 2>/dev/null) ||
	skip_test "commit $OLD_REV (the previous version) is not in the history of $SRC (a shallow clone?)"
OLD=$BIN/upgrade-$OLD_REV
OLDBIN=$OLD/build

old_built() {
	[ -x "$OLDBIN/vmferryd" ] && [ -x "$OLDBIN/vmferryctl" ] &&
		[ "$(cat "$OLDBIN/.vmferry-built" 2>/dev/null)" = "$OLD_FULL" ]
}
old_build() {
	local log=$BIN/upgrade-$OLD_REV.log
	if [ "$(git -C "$OLD" rev-parse HEAD 2>/dev/null)" != "$OLD_FULL" ] ||
		[ "$(git -C "$OLD" rev-parse --show-toplevel 2>/dev/null)" != "$(cd "$OLD" && pwd -P)" ]; then
		git -C "$SRC" worktree remove --force "$OLD" >/dev/null 2>&1 || rm -rf "$OLD"
		git -C "$SRC" worktree prune
		git -C "$SRC" worktree add --detach "$OLD" "$OLD_FULL" >"$log" 2>&1 ||
			fail "git worktree add $OLD $OLD_REV: $(tail -3 "$log")"
	fi
	echo "# building vmferryd and vmferryctl of $OLD_REV in $OLDBIN (once)"
	{ cmake -S "$OLD" -B "$OLDBIN" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
		ninja -C "$OLDBIN" vmferryd vmferryctl; } >>"$log" 2>&1 ||
		fail "the build of $OLD_REV failed: $(tail -5 "$log")"
	echo "$OLD_FULL" >"$OLDBIN/.vmferry-built"
}
if ! old_built; then
	mkdir -p "$BIN"
	exec 8>"$BIN/upgrade-$OLD_REV.lock"
	flock 8 # another run may be building it
	old_built || old_build
	exec 8>&-
fi
ok "the previous version ($OLD_REV) is built: $OLDBIN"

# ---- the state the previous version keeps ----

# job_record RULE VM: the job's record in the store, read with mdb_dump
# (lmdb-utils) and decoded as the previous version wrote it (job record V1
# with the migration data inside):
#   "STATE DATAVERSION SNAPSHOT NCIDS CKPT0 CKPT1 ..." (SNAPSHOT the moref
# of the pass's snapshot or "-", NCIDS how many disks have the changeId of
# a finished sync, a checkpoint a byte offset or "done"); no more than
# "STATE data-vN" when the data is not version 2.
job_record() {
	local h p=0 hex pair=0 line len
	command -v mdb_dump >/dev/null || fail "mdb_dump (lmdb-utils) is needed to read the store"
	# "HEADER=END", then a key line and a value line per record, " <hex>".
	while IFS= read -r line; do
		case "$line" in
		HEADER=END) pair=1 ;;
		" "*)
			if [ $pair = 1 ]; then key=${line# }; pair=2; else hex=${line# }; pair=1
				# The key: kind byte, rule, NUL, vm.
				[ "$key" = "04$(printf '%s' "$1" | xxd -p)00$(printf '%s' "$2" | xxd -p)" ] && h=$hex
			fi ;;
		esac
	done < <(mdb_dump -s jobs "$STATE/store" 2>/dev/null)
	[ -n "${h:-}" ] || { echo none; return; }
	u8() { v=$((16#${h:p:2})); p=$((p + 2)); }
	u16() { v=$((16#${h:p:4})); p=$((p + 4)); }
	u32() { v=$((16#${h:p:8})); p=$((p + 8)); }
	u64() { if [ "${h:p:16}" = ffffffffffffffff ]; then v=done; else v=$((16#${h:p:16})); fi; p=$((p + 16)); }
	str() { u16; len=$v; v=$(xxd -r -p <<<"${h:p:2*len}"); p=$((p + 2 * len)); }
	local state dver snap nd i cks="" ncid=0
	u16; [ "$v" = 1 ] || { echo "job-record-v$v"; return; }
	u8; str; str; str; state=$v
	str; str; u64; u64; u64; u64; u64; u32
	u16; dver=$v
	[ "$dver" = 2 ] || { echo "$state data-v$dver"; return; }
	u8; u8; u8; u8; str; str; str; str; snap=${v:--}
	u64; u64; u64; u64; u64; nd=$v
	for ((i = 0; i < nd; i++)); do
		u64; u64; str; str; str; str; str; [ -z "$v" ] || ncid=$((ncid + 1))
		u64; cks+=" $v"
		u8; str; str; u64
	done
	echo "$state 2 $snap $ncid$cks"
}

# A checkpoint inside a disk (neither 0 nor done) is in the record.
mid_checkpoint() {
	local rec c
	rec=$(job_record "$RULE" "$VM")
	set -- $rec
	[ "${2:-}" = 2 ] || return 1
	shift 4
	for c in "$@"; do [ "$c" != done ] && [ "$c" -gt 0 ] && return 0; done
	return 1
}

snap_moref() { curl -sf "$S_CTL/snapshots?vm=$1" | jq -r --arg n "$2" '[.[] | select(.name == $n) | .moref][0] // ""'; }
probe() { "$PROBE" --thumbprint "$S_THUMB" "$S_URL" "$@"; }

# ---- 1. the previous version, killed mid-transfer ----

CAP0=25165947 # 24 MiB + 123
CAP1=8392711  # 8 MiB + 4103
READY="upr/rdy01 migration/migration" # RULE/VM of the jobs that are ready
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"$VM","host":"H0","power":"on","cbt":true,
         "disks":[{"capacity":$CAP0,"seed":11,"allocated":1.0},{"capacity":$CAP1,"seed":12,"allocated":1.0}]},
        {"name":"rdy01","host":"H0","power":"on","cbt":true,
         "disks":[{"capacity":3145739,"seed":13,"allocated":0.5},{"capacity":1048583,"seed":14}]},
        {"name":"migration","host":"H0","power":"on","cbt":true,
         "disks":[{"capacity":2097169,"seed":15,"allocated":0.7},{"capacity":1048589,"seed":16,"allocated":0.3}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config # no datastore_mounts: the https transport with staging images
for rv in $READY; do mig_rule "${rv%/*}" "${rv#*/}" "fast_transfer: true"; done

BIN=$OLDBIN
start_daemon "$CONF"
for rv in $READY; do wait_job "${rv%/*}" "${rv#*/}" ready 60; done
mig_rule "$RULE" "$VM" "fast_transfer: true" \
	'[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 3MiB/s } ]'
wait_job "$RULE" "$VM" transferring 60
wait_until 60 sh -c "[ \$('$BIN/vmferryctl' -s '$SOCK' --json jobs $RULE | jq '.jobs[0].progress') -gt 0 ]" ||
	fail "the old version's transfer made no progress"
wait_until 60 mid_checkpoint || fail "no checkpoint inside a disk was recorded: $(job_record "$RULE" "$VM")"
crash_daemon
BIN=$NEWBIN
ok "the previous vmferryd killed (-9) while transferring, after a recorded checkpoint"

rec=$(job_record "$RULE" "$VM")
read -r rstate rver rsnap _ rck0 rck1 <<<"$rec"
assert_eq "$rstate $rver" "transferring 2" "the store holds the job's version 2 record ($rec)"
assert_eq "$(snap_names "$VM")" "vmferry-$RULE-1" "the source has the snapshot named the old way"
[ "$rsnap" != - ] && [ "$(snap_moref "$VM" "vmferry-$RULE-1")" = "$rsnap" ] &&
	ok "the record names that snapshot ($rsnap)" || fail "the record names snapshot $rsnap, not vmferry-$RULE-1"
OLDDIR=$STATE/tmp/$RULE/$VM
NEWDIR=$STATE/tmp/migration/$RULE/$VM
[ -f "$OLDDIR/vm-config.json" ] && [ -f "$OLDDIR/disk0.img" ] &&
	ok "the staging directory is temp_dir/$RULE/$VM: $(cd "$OLDDIR" && echo *)" ||
	fail "no staging directory $OLDDIR: $(find "$STATE/tmp" 2>&1 | head)"
[ ! -e "$NEWDIR" ] && ok "nothing in temp_dir/migration/$RULE yet" || fail "$NEWDIR exists"
for rv in $READY; do
	assert_eq "$(job_record "${rv%/*}" "${rv#*/}")" "ready 2 - 2 0 0" \
		"$rv: the ready job's version 2 record holds a changeId per disk"
	[ -f "$STATE/tmp/$rv/disk0.img" ] && [ -f "$STATE/tmp/$rv/disk1.img" ] &&
		ok "$rv: its staging images are in temp_dir/$rv" || fail "no staging images in $STATE/tmp/$rv"
done

# ---- 2. an old-named leftover, a backup's snapshot, guest writes ----

probe snapshot "$VM" "vmferry-$RULE-7" >/dev/null || fail "could not create snapshot vmferry-$RULE-7"
probe snapshot "$VM" "vmferry-backup-$RULE-3" >/dev/null || fail "could not create snapshot vmferry-backup-$RULE-3"
assert_eq "$(snap_names "$VM")" "vmferry-$RULE-1,vmferry-$RULE-7,vmferry-backup-$RULE-3" \
	"a leftover named the old way and a backup rule's snapshot are on the source"
gwrite "{\"vm\":\"$VM\",\"disk\":1,\"offset\":4096,\"length\":200000,\"seed\":31}" >/dev/null
gwrite '{"vm":"rdy01","disk":0,"offset":70000,"length":100000,"seed":33}' >/dev/null
gwrite '{"vm":"migration","disk":1,"offset":5000,"length":300000,"seed":34}' >/dev/null

# ---- 3. this version on the same state directory and configuration ----

stats_reset
start_daemon "$CONF"
wait_job "$RULE" "$VM" ready 120
log=$(ctl log "$RULE" "$VM" -n 300)
assert_match "$log" "staging files moved from $OLDDIR to $NEWDIR" "the staging directory was moved (log)"
resume=$(grep -Eo 'disk [0-9]+: resuming at offset [0-9]+' <<<"$log" | head -1 || true)
rdisk=${resume#disk }; rdisk=${rdisk%%:*}
roff=${resume##* }
[ -n "$resume" ] && [ "$roff" -gt 0 ] && ok "the copy resumed at its recorded checkpoint ($resume)" ||
	fail "no resume at a nonzero offset in the log: $(grep -E 'resum|copying|disk' <<<"$log" | tail -5)"
want_ck=$([ "$rdisk" = 0 ] && echo "$rck0" || echo "$rck1")
assert_eq "$roff" "$want_ck" "the offset is the old version's checkpoint of disk $rdisk"
# The rest of the resumed disk and the disks after it, nothing below the
# checkpoint: the old staging image holds it.
if [ "$rdisk" = 0 ]; then want=$((CAP0 - roff + CAP1)); else want=$((CAP1 - roff)); fi
assert_eq "$(flat_bytes "$VM")" "$want" "only the rest was read from the source"
assert_match "$log" "removing leftover snapshot vmferry-$RULE-7 " "the old-named leftover was removed (log)"
assert_eq "$(snap_names "$VM")" "vmferry-backup-$RULE-3" \
	"at ready: the old-named snapshots are gone, the backup rule's is left alone"
[ ! -e "$STATE/tmp/$RULE" ] && [ -f "$NEWDIR/disk0.img" ] && [ -f "$NEWDIR/disk1.img" ] &&
	ok "the staging files are in temp_dir/migration/$RULE/$VM, temp_dir/$RULE is gone" ||
	fail "staging: $(find "$STATE/tmp" | head -20 | tr '\n' ' ')"

# The engine reads the base file a snapshot freezes; with another snapshot
# under its own that file is a delta it cannot read ("not a flat disk"),
# so the backup's snapshot goes before the catch-up (the first pass could
# not have run over it either).
probe remove-snapshot "$(snap_moref "$VM" "vmferry-backup-$RULE-3")" >/dev/null ||
	fail "could not remove snapshot vmferry-backup-$RULE-3"
gwrite "{\"vm\":\"$VM\",\"disk\":0,\"percent\":5,\"seed\":32}" >/dev/null
ctl migrate "$RULE" "$VM" >/dev/null || fail "migrate refused"
wait_job "$RULE" "$VM" complete 120
assert_eq "$(job_state "$RULE" "$VM")" complete "the job is complete"
assert_eq "$(vm_count "$D_CTL" "$VM")" 1 "exactly one target VM $VM"
assert_eq "$(dst_hashes "$VM" 2)" "$(src_hashes "$VM" 2)" "every target disk has the source's bytes"
assert_eq "$(snap_names "$VM")" "" "no snapshot left on the source"
assert_nomatch "$(ctl log "$RULE" "$VM" -n 300)" "copying (it|its allocated areas) in full|cannot read" \
	"the catch-up read only the changes since the old version's snapshot"
[ ! -e "$OLDDIR" ] && [ ! -e "$NEWDIR" ] && ok "no staging directory is left (old or new)" ||
	fail "staging left: $(find "$STATE/tmp" | head -20 | tr '\n' ' ')"

# The jobs that were ready under the previous version.
for rv in $READY; do
	rr=${rv%/*} rvm=${rv#*/}
	ctl migrate "$rr" "$rvm" >/dev/null || fail "migrate $rr $rvm refused"
	wait_job "$rr" "$rvm" complete 120
	check_complete "$rr" "$rvm" 2 "$rv (ready before the upgrade)"
	rlog=$(ctl log "$rr" "$rvm" -n 300)
	assert_match "$rlog" "staging files moved from $STATE/tmp/$rv to $STATE/tmp/migration/$rv" \
		"$rv: its staging directory was moved (log)"
	assert_nomatch "$rlog" "copying (it|its allocated areas) in full|cannot read" \
		"$rv: its catch-up read only the changes since the old version's full copy"
done
# No file is left; of the directories, the new rules' (as without an
# upgrade) and migration/migration's old one, which held its new one.
# What goes is removed off the loop: the trash empties by itself.
wait_until 30 test ! -e "$STATE/tmp/.trash" || fail "temp_dir/.trash is still there: $(find "$STATE/tmp/.trash" | head -5 | tr '\n' ' ')"
assert_eq "$(find "$STATE/tmp" -mindepth 1 ! -type d)" "" "no staging file is left"
assert_eq "$(cd "$STATE/tmp" && find . -mindepth 1 | sort | tr '\n' ' ')" \
	"./migration ./migration/migration ./migration/upg ./migration/upr " \
	"no job's directory is left, old or new, nor the old rules' directories"

assert_eq "$(curl -sf "$D_CTL/vms" | jq -r '[.[].name] | join(",")')" "$VM,migration,rdy01" \
	"the target holds exactly one VM per job"
