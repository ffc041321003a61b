#!/usr/bin/env bash
# Replication's operations on its restore points (SPEC §9): points lists
# them; revert to an older point (恢复快照, then 快照清除 of the later
# ones), and the next cycle sends the changes since that point; a
# temporary failover (临时切换) runs the target at a point, powered on,
# while cycles are refused; failback (回切) returns it, off, to the latest
# point and replication resumes; a permanent failover (永久切换) leaves a
# powered-on target with no engine snapshot and a final job.  Unknown
# points are refused with the points there are, and nothing changes.
# Content is checked with the peer's hashes and qemu-img on the chain.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
command -v qemu-img >/dev/null || skip_test "qemu-img (qemu-utils) is not installed"

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"ops01","host":"H0","power":"on","disks":[{"capacity":$((6 * MiB)),"seed":91,"allocated":0.4},{"capacity":$((2 * MiB + 512)),"seed":92,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
rep_rule rep ops01 "fast_transfer: true, auto_sync: false" 3
start_daemon "$CONF"

declare -A at # at[CYCLE.DISK]: the source's hash when that cycle ran
cycle() { # cycle N: wait for cycle N to finish, remember the source
	wait_job rep ops01 "$2" 120
	for d in 0 1; do at[$1.$d]=$(src_sha ops01 $d); done
}
writes() {
	for d in 0 1; do gwrite "{\"vm\":\"ops01\",\"disk\":$d,\"percent\":5,\"seed\":$((100 + 10 * $1 + d))}" >/dev/null; done
}
target_is() { # target_is CYCLE WHAT
	for d in 0 1; do
		assert_eq "$(dst_sha ops01 $d)" "${at[$1.$d]}" "$2: target disk $d holds the source as of cycle $1"
	done
	qcompare_chain_ok
}
qcompare_chain_ok() {
	for d in 0 1; do
		qemu-img check -q -f vmdk "$D_DIR/ds0/$(vmdk_of "$D_CTL" ops01 $d)" || fail "qemu-img check: target disk $d's chain"
	done
}
points() { ctl --json show rep ops01 --kind replication | jq -r '[.details.points[].point] | join(",")'; }
tsnaps() { curl -sf "$D_CTL/snapshots?vm=ops01" | jq -r '[.[].name | sub("vmferry-replication-rep-"; "")] | join(",")'; }

cycle 1 complete
for c in 2 3; do writes $c; ctl run rep ops01 >/dev/null; sleep 0.3; cycle $c complete; done
assert_eq "$(points)" "1,2,3" "three cycles, three restore points"
out=$(ctl points rep ops01)
assert_match "$out" "^POINT" "vmferryctl points prints a table"
assert_match "$out" $'\n3 +[0-9-]+ [0-9:]+ +snapshot-' "... with each point's time and snapshot"

# An unknown point is refused with the points there are; nothing changes.
out=$(ctl revert rep ops01 --point 9 2>&1) && fail "revert to an unknown point must fail"
assert_match "$out" "has no restore point 9 \\(its points: 1, 2, 3\\)" "revert to an unknown point names the points there are"
assert_eq "$(job_state rep ops01)" complete "... and the job is unchanged"
out=$(ctl revert rep ops01 2>&1) && fail "revert without --point must fail"
assert_match "$out" "revert needs --point" "revert without a point says so"

# 恢复快照 to point 1, then 快照清除 of 2 and 3.
writes 4
assert_match "$(ctl revert rep ops01 --point 1)" "ops01: complete -> reverting" "revert goes to 恢复快照"
wait_job rep ops01 idle 60
assert_eq "$(points)" "1" "after the revert only point 1 remains"
assert_eq "$(tsnaps)" "rp1" "... and the target VM holds only its snapshot"
assert_match "$(ctl log rep ops01 -n 40)" "reverting -> snapshot_cleanup" "恢复快照 is followed by 快照清除"
target_is 1 "after the revert"
ctl run rep ops01 >/dev/null; sleep 0.3; cycle 4 complete
target_is 4 "the cycle after the revert"
assert_match "$(ctl log rep ops01 -n 60)" "the next cycle sends the changes since restore point 1" "the next cycle counts from point 1"
assert_eq "$(points)" "1,4" "that cycle made point 4 after point 1"

# 临时切换 to point 1: on, at point 1; a cycle is refused; 回切.
assert_match "$(ctl failover rep ops01 --point 1)" "ops01: complete -> failover_temporary" "failover goes to 临时切换"
wait_until 30 sh -c "[ \"\$(curl -sf '$D_CTL/vms' | jq -r '.[] | select(.name==\"ops01\") | .power')\" = poweredOn ]" ||
	fail "the failed-over target VM never powered on"
ok "the failed-over target VM runs"
target_is 1 "failed over to point 1"
out=$(ctl run rep ops01 2>&1) && fail "a cycle while failed over must be refused"
assert_match "$out" "failover_temporary" "a cycle while failed over is refused, naming the state"
out=$(ctl stop rep ops01 2>&1) && fail "stop while failed over must be refused"
# The failed-over VM writes; failback discards that.
curl -sf -XPOST "$D_CTL/write" -d '{"vm":"ops01","disk":0,"percent":2,"seed":555}' >/dev/null ||
	fail "the failed-over target VM could not be written"
[ "$(dst_sha ops01 0)" != "${at[1.0]}" ] && ok "the failed-over target VM's disk changed while it ran" ||
	fail "the write to the failed-over target VM changed nothing"
assert_match "$(ctl failback rep ops01)" "ops01: failover_temporary -> failing_back" "failback goes to 回切"
wait_job rep ops01 idle 60
assert_eq "$(vm_power "$D_CTL" ops01)" poweredOff "after failback the target VM is off"
target_is 4 "after failback (the latest point)"
writes 5
ctl run rep ops01 >/dev/null; sleep 0.3; cycle 5 complete
target_is 5 "the cycle after failback"
assert_eq "$(points)" "1,4,5" "replication resumed: point 5"

# 永久切换 to point 4: on, no restore point, final.
out=$(ctl failover rep ops01 --point 7 2>&1) && fail "failover to an unknown point must fail"
assert_match "$out" "has no restore point 7" "failover to an unknown point is refused"
assert_match "$(ctl failover rep ops01 --point 4 --permanent)" "ops01: complete -> failover_permanent" "failover --permanent goes to 永久切换"
wait_until 30 sh -c "[ \"\$(curl -sf '$D_CTL/vms' | jq -r '.[] | select(.name==\"ops01\") | .power')\" = poweredOn ]" ||
	fail "the permanently failed-over target VM never powered on"
wait_until 30 sh -c "[ \"\$(curl -sf '$D_CTL/snapshots?vm=ops01' | jq length)\" = 0 ]" ||
	fail "restore points remain after a permanent failover: $(tsnaps)"
ok "after a permanent failover the target VM runs with no restore point"
target_is 4 "permanent failover to point 4"
assert_eq "$(snap_count ops01)" 0 "no engine snapshot is left on the source"
assert_eq "$(vm_power "$S_CTL" ops01)" poweredOn "the source VM is untouched"
out=$(ctl run rep ops01 2>&1) && fail "a run after a permanent failover must be refused"
assert_match "$out" "failover_permanent" "the job is final"
stop_daemon
start_daemon "$CONF"
assert_eq "$(job_state rep ops01)" failover_permanent "a restart keeps it final"
stop_daemon
echo "1..$NTEST"
