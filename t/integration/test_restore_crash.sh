#!/usr/bin/env bash
# kill -9 during a restore (issue #16): the restore is a persisted state;
# after a restart it resumes from its checkpoint and the result is right.
# A few random instants of restores to new VMs and one to the original VM
# (powered off), and a stop that gives a restore up; tools/chaos --full runs
# more (t/chaos/chaos_restore.sh).
# RESTORE_CRASHES sets how many.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"

MiB=1048576
N=${RESTORE_CRASHES:-3}
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"cr01","host":"H0","power":"on","disks":[{"capacity":$((24 * MiB + 512)),"seed":21,"allocated":0.8},{"capacity":$((9 * MiB + 4096)),"seed":22,"allocated":0.6}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
# 4 MiB/s: a restore of the ~26 MiB takes several seconds, crashes land inside it.
bak_rule bak cr01 "fast_transfer: true" 7 'bandwidth: [{ days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 4MiB/s }]'
bak_first_full bak cr01 2

# restore_crash WHAT DELAY ARGS...: ask a restore, kill -9 the daemon
# DELAY seconds later, start it again, wait for the restore to end.
restore_crash() {
	local what=$1 delay=$2; shift 2
	ctl restore bak cr01 "$@" >/dev/null
	sleep "$delay"
	local st
	st=$(job_state bak cr01)
	crash_daemon
	echo "# $what: killed after ${delay}s in state $st"
	start_daemon "$CONF"
	wait_job bak cr01 idle 180
	ok "$what: the restore killed after ${delay}s ($st) ends after the restart"
}

# restore_reaches PCT: wait until the restore has copied PCT %.  In
# restore_queued the job still shows the backup's 100 %: only the
# restore's own progress counts.
restore_reaches() {
	wait_until 60 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json jobs bak | jq -e --argjson p $1 '.jobs[0] | .state == \"restoring\" and .progress >= \$p' >/dev/null" ||
		fail "the restore did not reach $1 %"
}

# One crash mid-copy, past a checkpoint: the restore goes on from it.
ctl restore bak cr01 --target new --name cr01-n0 >/dev/null
restore_reaches 40
progress=$(job_field bak cr01 progress)
assert_eq "$(ctl --json show bak cr01 | jq -c '.details.restore | [.point, .target, .name, .stage]')" '[1,"new","cr01-n0","areas"]' \
	"show tells the restore in progress: its point, target, name and stage"
assert_eq "$(job_json bak cr01 | jq -r '"\(.state) \(.label_zh) \(.rate_bps > 0) \(.bytes_total > 0)"')" "restoring 恢复中 true true" \
	"a restore shows 恢复中 with its progress ($progress %), bytes and rate"
crash_daemon
start_daemon "$CONF"
wait_job bak cr01 idle 180
assert_match "$(ctl log bak cr01 -n 100)" "disk 0: resuming the restore at offset [1-9][0-9]*" \
	"killed at $progress %, the restore resumed from its checkpoint, not from the start"
assert_eq "$(src_hashes cr01-n0 2)" "$want" "killed mid-copy: the new VM equals the point"

# A stop gives the restore up: the job rests, its staging files go, the
# new VM it created is removed, and the next restore runs from the start.
ctl restore bak cr01 --target new --name cr01-stop >/dev/null
restore_reaches 20
ctl stop bak cr01 >/dev/null
wait_job bak cr01 stopped 60
assert_match "$(ctl log bak cr01 -n 20)" "the restore of point 1 is given up" "a stop gives the restore up, and says so"
assert_eq "$(ls "$STATE/tmp/backup/bak/cr01" | grep -c '^restore-' || true)" 0 "a stopped restore leaves no staging file"
assert_eq "$(ctl --json show bak cr01 | jq -r '.details.restore // "none"')" none "show lists no restore after the stop"
assert_eq "$(vm_count "$S_CTL" cr01-stop)" 0 "a stopped restore leaves no VM cr01-stop on the peer"
ctl start bak cr01 >/dev/null
wait_job bak cr01 idle 30

for ((i = 1; i <= N; i++)); do
	delay=$(awk -v s=$RANDOM 'BEGIN { srand(s); printf "%.2f", 0.3 + rand() * 6 }')
	restore_crash "crash $i" "$delay" --target new --name cr01-n$i
	assert_eq "$(vm_count "$S_CTL" cr01-n$i)" 1 "crash $i: exactly one new VM cr01-n$i"
	assert_eq "$(src_hashes cr01-n$i 2)" "$want" "crash $i: the new VM equals the point"
	assert_eq "$(snap_count cr01-n$i)" 0 "crash $i: no snapshot left on the new VM"
done

# The original VM, powered off, after guest writes.
curl -sf -XPOST "$S_CTL/power" -d '{"vm":"cr01","state":"off"}' >/dev/null || fail "the peer cannot power cr01 off"
for d in 0 1; do gwrite "{\"vm\":\"cr01\",\"disk\":$d,\"percent\":30,\"seed\":$((60 + d))}" >/dev/null; done
delay=$(awk -v s=$RANDOM 'BEGIN { srand(s); printf "%.2f", 0.3 + rand() * 4 }')
restore_crash "original" "$delay" --point 1
assert_eq "$(src_hashes cr01 2)" "$want" "original: the VM equals the point after a crash during its restore"
assert_eq "$(snap_count cr01)" 0 "original: no snapshot left on the VM ($(snap_names cr01))"
ctl run bak cr01 --mode incremental >/dev/null
wait_job bak cr01 complete 120
assert_eq "$(ctl --json show bak cr01 | jq -r '.details.points[-1].mode')" full "the backup after the restore is a full"
stop_daemon
echo "1..$NTEST"
