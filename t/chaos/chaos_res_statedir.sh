#!/usr/bin/env bash
# Resources: the state directory (the LMDB store) on a small tmpfs that
# fills up in the middle of a migration's full copy.  The store keeps the
# writes it cannot commit in its journal and retries every second; nothing
# new starts meanwhile, so no side effect runs ahead of its recorded
# state.  After a few seconds the working job goes to 失效 (invalid) with
# the reason; `ping` and `jobs` say why.  A kill -9 while the disk is full
# and a restart on the full disk lose nothing that was committed.  Once
# space is freed the job resumes by itself from its last recorded
# checkpoint and the migration completes with the source's bytes.
# CI: one migration; CHAOS_FULL=1: the disk fills up three times.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/migrate_lib.sh"

MIB=1048576
if [ "${CHAOS_FULL:-0}" = 1 ]; then rounds=3; else rounds=1; fi
tmpfs_mount STATE 8m   # lib.sh's start_daemon runs vmferryd -d "$STATE"
cap=$((rounds * 24 * MIB + 77))
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"st01","host":"H0","power":"on","cbt":true,
         "disks":[{"capacity":$cap,"seed":21,"allocated":1.0},{"capacity":1048583,"seed":22,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
# Only the store is on the small disk: temp_dir is elsewhere.
mkdir -p "$T/tmp"
mig_temp_dir "$T/tmp"
start_daemon "$CONF"
# 2 MiB/s: 12 s per round, so the copy outlasts the 5 s before jobs go 失效.
mig_rule st st01 "fast_transfer: true, auto_migrate: true" \
	'[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 2MiB/s } ]'

store_field() { ctl --json ping | jq -r ".store.$1"; }
bytes_done() { job_field st st01 bytes_done; }

# The state that keeps growing once the disk is full: a rule over VMs the
# source does not have, whose jobs (and their failures) the store must
# record.
grow_rule() { mig_rule grow "$(seq -f "g%03g" 1 "$1" | tr '\n' ' ')"; }

wait_job st st01 transferring 60
full_at=""
attempts=0
for ((r = 1; r <= rounds; r++)); do
	# Fill the disk in the middle of the copy, once a checkpoint past the
	# previous round's has been recorded: checkpoints come every 2 s, and
	# at 2 MiB/s with a 1 s burst, 7 MiB take at least 2.5 s.
	base=$(( (r - 1) * 24 * MIB + 7 * MIB ))
	wait_until 120 sh -c "[ \$('$BIN/vmferryctl' -s '$SOCK' --json jobs st | jq '.jobs[0].bytes_done') -gt $base ]" ||
		fail "round $r: the copy did not get past $((base / MIB)) MiB"
	f0=$(store_field commit_failures)
	dd if=/dev/zero of="$STATE/filler" bs=64k status=none 2>/dev/null || true
	grow_rule $((r * 150))
	full_at+="$(($(bytes_done) / MIB)) "
	ok "round $r: the state directory is full ($(df -k --output=avail "$STATE" | tail -1 | tr -d ' ') KiB free) at $(($(bytes_done) / MIB)) MiB copied, and the state grows"
	wait_job st st01 "invalid complete" 60
	j=$(job_json st st01)
	assert_eq "$(jq -r '"\(.state) \(.label_zh)"' <<<"$j")" "invalid 失效" "round $r: the job is 失效 (invalid) while nothing can be recorded"
	err=$(jq -r .error <<<"$j")
	assert_match "$err" "state directory cannot be written: $STATE/store: No space left on device" \
		"round $r: its reason names the state directory and the cause"
	assert_eq "$(store_field ok)" false "round $r: ping reports the store failing"
	assert_match "$(store_field error)" "No space left on device" "round $r: ping says why"
	assert_match "$(ctl jobs)" "warning: the state directory cannot be written" "round $r: vmferryctl jobs warns"
	# It stays so, and the daemon keeps retrying rather than crashing.
	f1=$(store_field commit_failures)
	wait_until 30 sh -c "[ \$('$BIN/vmferryctl' -s '$SOCK' --json ping | jq .store.commit_failures) -ge $((f1 + 3)) ]" ||
		fail "round $r: commits are not retried"
	assert_eq "$(job_state st st01)" invalid "round $r: the job stays 失效 while commits fail ($(store_field commit_failures) failed attempts)"
	assert_eq "$(snap_count st01)" 1 "round $r: the pass's snapshot is kept for the resumption"
	if [ $r = 1 ]; then
		# kill -9 while full, and a restart on the full disk.
		attempts=$((attempts + $(store_field commit_failures)))
		crash_daemon
		ok "vmferryd killed (-9) while the state directory is full"
		start_daemon "$CONF"
		ok "vmferryd restarts on the full state directory"
		st=$(job_state st st01)
		assert_eq "$st" transferring "after the restart the job is in its last recorded state ($st)"
		assert_match "$(ctl log st st01 -n 1000 | head -3)" "job created in state starting" \
			"the job's recorded history is intact"
		wait_job st st01 invalid 60
		assert_match "$(job_field st st01 error)" "No space left on device" "after the restart on the full disk the job is 失效 again, with the reason"
	fi
	rm -f "$STATE/filler"
	ok "round $r: space freed"
	wait_until 30 sh -c "[ \$('$BIN/vmferryctl' -s '$SOCK' --json ping | jq -r .store.ok) = true ]" ||
		fail "round $r: commits do not work again after space was freed"
	ok "round $r: commits work again"
	[ $r != $rounds ] || attempts=$((attempts + $(store_field commit_failures)))
	[ $r = $rounds ] || wait_job st st01 transferring 60
done
wait_job st st01 complete 240
ok "the job resumed by itself and completed"
log=$(ctl log st st01 -n 1000)
offs=$(grep -Eo 'disk 0: resuming at offset [0-9]+' <<<"$log" | grep -Eo '[0-9]+$' | tr '\n' ' ' || true)
set -- $offs
[ $# -ge $rounds ] && [ "${1:-0}" -gt 0 ] && ok "each resumption continued from a recorded checkpoint (offsets $offs)" ||
	fail "expected $rounds resumptions from a checkpoint, the log shows offsets '$offs'"
check_complete st st01 2 "state directory full"
assert_eq "$(ctl --json jobs grow | jq '.jobs | length')" $((rounds * 150)) "every job of the growing rule is recorded"
stop_daemon
start_daemon "$CONF"
assert_eq "$(job_state st st01)" complete "after a restart the migration is still complete"
assert_eq "$(ctl --json jobs grow | jq '.jobs | length')" $((rounds * 150)) "and the other rule's jobs are all there"
echo "# figure: state directory full: $rounds time(s) (at ${full_at% } MiB copied), $attempts failed commit attempts, no crash, the job 失效 with the reason each time; kill -9 and a restart on the full disk lost nothing committed; resumed at offsets ${offs% } after space was freed, bytes identical"
