#!/usr/bin/env bash
# Resources: the LMDB map grows instead of failing.  vmferryd starts with a
# tiny map (VMFERRY_STORE_INITIAL_MAP, a testing knob; 64 MiB otherwise)
# and is made to record far more than fits: hundreds of jobs with long
# logs, while a real migration runs.  No error, the map grows, the
# migration completes with the source's bytes, and after a restart every
# job and every log entry is still there.  CI: 300 jobs, 4 start rounds;
# CHAOS_FULL=1: 1500 jobs, 8 rounds.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/migrate_lib.sh"

if [ "${CHAOS_FULL:-0}" = 1 ]; then njobs=1500; rounds=8; else njobs=300; rounds=4; fi
export VMFERRY_STORE_INITIAL_MAP=$((256 * 1024))

cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"map01","host":"H0","power":"on","cbt":true,
         "disks":[{"capacity":6291469,"seed":31,"allocated":0.8},{"capacity":1048583,"seed":32,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
start_daemon "$CONF"
store_field() { ctl --json ping | jq -r ".store.$1"; }
assert_eq "$(store_field map_size)" $((256 * 1024)) "the store starts with a 256 KiB map"

# A migration that copies while the map grows under it (1 MiB/s: 6 s).
mig_rule map map01 "fast_transfer: true, auto_migrate: true" \
	'[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 1MiB/s } ]'
# Many jobs over VMs the source does not have: each is created, looks its
# VM up and fails with a reason; every start makes it do so again, and
# each time its log grows.
mig_rule many "$(seq -f "m%04g" 1 $njobs | tr '\n' ' ')"
nfailed() { ctl --json jobs many | jq '[.jobs[] | select(.state == "failed")] | length'; }
wait_until 120 sh -c "[ \$('$BIN/vmferryctl' -s '$SOCK' --json jobs many | jq '[.jobs[] | select(.state == \"failed\")] | length') -eq $njobs ]" ||
	fail "the $njobs jobs did not all fail (their VMs are missing): $(nfailed) did"
ok "$njobs jobs created, each failed with its reason"
for ((r = 2; r <= rounds; r++)); do
	ctl start many >/dev/null || fail "start many refused"
	wait_until 120 sh -c "[ \$('$BIN/vmferryctl' -s '$SOCK' --json stats many | jq '[.jobs[] | select(.failures == $r)] | length') -eq $njobs ]" ||
		fail "round $r: not every job failed again"
done
ok "$rounds rounds: every job started and failed $rounds times"
wait_job map map01 complete 180
check_complete map map01 2 "migration while the map grows"

grows=$(store_field map_grows)
size=$(store_field map_size)
[ "$grows" -gt 0 ] && [ "$size" -gt $((256 * 1024)) ] && ok "the map grew $grows times, to $((size / 1024)) KiB" ||
	fail "the map did not grow (grows $grows, size $size)"
assert_eq "$(store_field commit_failures)" 0 "no commit failed"
assert_nomatch "$(grep -E 'store:|fatal' "$T/daemon.log" | grep -v 'map grown to' || true)" . "the store logged nothing but its growth"
assert_match "$(grep 'store: map grown to' "$T/daemon.log" | tail -1)" "map grown to" "the daemon logged the growth"

# Everything recorded survives a restart (with the same small initial map).
snapshot() {
	ctl --json jobs | jq -S '[.jobs[] | {rule, vm, state, error, bytes_done, bytes_total}] | sort_by(.rule, .vm)'
	ctl --json stats many | jq -S '.jobs | sort_by(.vm)'
	for v in m0001 "m$(printf %04d $((njobs / 2)))" "m$(printf %04d $njobs)"; do ctl --json log many "$v" -n 100000 | jq -S .log; done
	ctl --json log map map01 -n 100000 | jq -S .log
}
before=$(snapshot)
lines=$(ctl --json log many m0001 -n 100000 | jq '.log | length')
stop_daemon
start_daemon "$CONF"
after=$(snapshot)
[ "$before" = "$after" ] && ok "after a restart every job, statistic and log entry is identical ($lines log entries per job)" ||
	fail "the state differs after the restart: $(diff <(echo "$before") <(echo "$after") | head -20)"
# LMDB opens with the configured map or the data's size, whichever is
# larger: more writes make it grow again.
ctl start many >/dev/null || fail "start many refused"
r=$((rounds + 1))
wait_until 120 sh -c "[ \$('$BIN/vmferryctl' -s '$SOCK' --json stats many | jq '[.jobs[] | select(.failures == $r)] | length') -eq $njobs ]" ||
	fail "after the restart, not every job failed again"
assert_eq "$(store_field commit_failures)" 0 "after the restart more state is recorded without a failed commit (map $(($(store_field map_size) / 1024)) KiB)"
echo "# figure: LMDB map: 256 KiB at start, grew $grows times to $((size / 1024)) KiB under $((njobs + 1)) jobs ($lines log entries each) and a running migration; 0 errors, 0 failed commits, state identical after a restart, bytes identical"
