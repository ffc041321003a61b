#!/usr/bin/env bash
# Backup points (seed 002, SPEC §10): a VM with three disks of odd sizes,
# partly allocated: full, guest writes, incremental, guest writes,
# differential, guest writes, incremental.  Each point, read back by
# t/tools/repo_read.py (which shares no code with the writer), equals the
# source as it was at that point's snapshot; incremental and
# differential read only the changed areas (the source peer's byte
# counters); a second full of an unchanged VM grows the repository by
# less than 0.1 % of the disk size.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"bak01","host":"H0","power":"on","disks":[{"capacity":$((8 * MiB + 512)),"seed":71,"allocated":0.3},{"capacity":$((3 * MiB)),"seed":72,"allocated":0.5},{"capacity":$((13 * MiB + 4096)),"seed":73,"allocated":0.2}]},
        {"name":"bak02","host":"H0","power":"on","disks":[{"capacity":$((12 * MiB)),"seed":74,"allocated":0.4}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
bak_rule bak bak01 "fast_transfer: true"
bak_rule whole bak02 "fast_transfer: false"
start_daemon "$CONF"
wait_job bak bak01 idle 30
ok "the backup job rests in 空闲 until it is run"

seq=0
for mode in full incremental differential incremental; do
	seq=$((seq + 1))
	stats_reset
	assert_match "$(ctl run bak bak01 --mode $mode)" "bak01: (idle|complete) -> queued" "vmferryctl run --mode $mode"
	wait_job bak bak01 complete 120
	ok "point $seq ($mode) completes"
	assert_eq "$(repo_points bak bak01)" "$(seq -s, 1 $seq)" "point $seq: the repository lists points 1..$seq"
	bak_point_equal bak bak01 $seq 3 "$mode"
	read=$(flat_bytes bak01)
	if [ $mode = full ]; then
		alloc=$(alloc_bytes bak01)
		[ "$read" -le $((alloc + 3 * 65536)) ] && ok "the full read $read bytes for $alloc allocated" ||
			fail "the full read $read bytes for $alloc allocated"
	else
		# changed: what the guest wrote since the point read against.
		[ $mode = incremental ] && want=$changed || want=$since_full
		[ "$read" -le $((want + 3 * 65536)) ] && ok "$mode read $read bytes for $want changed (≤ one grain per extent)" ||
			fail "$mode read $read bytes for $want changed"
	fi
	assert_eq "$(snap_count bak01)" 0 "point $seq: no snapshot left on the source"
	[ $seq = 4 ] && break
	changed=0
	for d in 0 1 2; do
		b=$(gwrite "{\"vm\":\"bak01\",\"disk\":$d,\"percent\":3,\"seed\":$((80 + 10 * seq + d))}" | jq .bytes)
		changed=$((changed + b))
	done
	[ $mode = full ] && since_full=0
	since_full=$((since_full + changed))
done
modes=$(ctl --json show bak bak01 | jq -r '[.details.points[].mode] | join(",")')
assert_eq "$modes" "full,incremental,differential,incremental" "show lists the four points with their modes"
assert_eq "$(ctl --json stats bak bak01 | jq -r '.jobs[0] | "\(.successes) \(.failures)"')" "4 0" "four successes, no failure"

# A second full of an unchanged VM stores (almost) nothing new.
before=$(du -sb "$(BAK_REPO)" | cut -f1)
ctl run bak bak01 --mode full >/dev/null
wait_job bak bak01 complete 120
after=$(du -sb "$(BAK_REPO)" | cut -f1)
disk=$((8 * MiB + 512 + 3 * MiB + 13 * MiB + 4096))
[ $((after - before)) -le $((disk / 1000)) ] && ok "a second full grew the repository by $((after - before)) bytes (< 0.1 % of $disk)" ||
	fail "a second full grew the repository by $((after - before)) bytes (disk $disk)"
bak_point_equal bak bak01 5 3 "second full"
"$REPO_READ" "$(BAK_REPO)" check bak bak01 5 >/dev/null && ok "repo_read.py checks every chunk id of point 5" ||
	fail "repo_read.py check of point 5"

# Without fast_transfer every backup reads whole disks (seed 002: 不勾选则
# 只能进行整盘备份); the repository still stores only new chunks.
for mode in full incremental; do
	stats_reset
	before=$(repo_chunk_bytes)
	ctl run whole bak02 --mode $mode >/dev/null
	wait_job whole bak02 complete 120
	assert_eq "$(flat_bytes bak02)" $((12 * MiB)) "fast_transfer off: the $mode read the whole disk"
	grown=$(($(repo_chunk_bytes) - before))
	if [ $mode = incremental ]; then
		# One 4 MiB chunk changed (64 KiB of it): one chunk file more, compressed or not.
		[ "$grown" -le $((4 * MiB + 4096)) ] && ok "fast_transfer off: the incremental stored $grown bytes, one chunk" ||
			fail "fast_transfer off: the incremental stored $grown bytes"
	fi
	bak_point_equal whole bak02 $([ $mode = full ] && echo 1 || echo 2) 1 "fast_transfer off, $mode"
	gwrite '{"vm":"bak02","disk":0,"offset":4194304,"length":65536,"seed":77}' >/dev/null
done

# The newest point's index damaged (a byte flipped): the next incremental
# cannot read against it; it becomes a full, says why, and is right.
idx="$(BAK_REPO)/points/bak/bak01/5/disk1.idx"
printf '\xff' | dd of="$idx" bs=1 seek=100 conv=notrunc status=none
gwrite '{"vm":"bak01","disk":1,"percent":3,"seed":99}' >/dev/null
ctl run bak bak01 --mode incremental >/dev/null
wait_job bak bak01 complete 120
assert_match "$(ctl log bak bak01 -n 60)" "point 6 cannot be read against point 5 \(.*disk1.idx.*\): it is a full" \
	"a damaged parent index turns the incremental into a full, naming the file"
assert_eq "$(ctl --json show bak bak01 | jq -r '.details.points[-1] | "\(.point) \(.mode) \(.parent)"')" "6 full 0" \
	"point 6 is recorded as a full"
bak_point_equal bak bak01 6 3 "after a damaged parent"
stop_daemon
echo "1..$NTEST"
