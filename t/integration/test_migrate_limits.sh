#!/usr/bin/env bash
# Limits: with max_tasks 2, five migrations never have more than two jobs
# in slot-holding states (full copies, catch-ups and cutovers alike); the
# others wait as pending (排队中) with a queue position, and all finish.
# A bandwidth window with limit 0 pauses a copy (no byte moves, the job
# stays in transferring with its progress kept) until the window is removed
# from the rule file (live reload), then the migration completes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"m1","host":"H0","power":"on","disks":[{"capacity":3145799,"seed":1}]},
        {"name":"m2","host":"H0","power":"on","disks":[{"capacity":3145811,"seed":2,"allocated":0.8}]},
        {"name":"m3","host":"H0","power":"on","disks":[{"capacity":2097211,"seed":3},{"capacity":1048627,"seed":4}]},
        {"name":"m4","host":"H0","power":"on","disks":[{"capacity":3145823,"seed":5}]},
        {"name":"m5","host":"H0","power":"on","disks":[{"capacity":3145829,"seed":6,"allocated":0.9}]},
        {"name":"q1","host":"H0","power":"on","disks":[{"capacity":8388653,"seed":10}]},
        {"name":"p1","host":"H0","power":"on","disks":[{"capacity":4194389,"seed":7,"allocated":0.5},{"capacity":1048639,"seed":8}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config "max_tasks: 2
max_tasks_per_host: 2
transfer_buffer: 1MiB
host_buffer_cap: 4MiB"
# 3 MiB/s for the rule: the five copies take several seconds.
mig_rule lim "m1 m2 m3 m4 m5" "fast_transfer: true" \
	'[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 3MiB/s } ]'
start_daemon "$CONF"

SLOT='["creating_vm","fetching_config","querying_changes","transferring","cutting_over"]'
# sample_until STATE: poll the jobs of rule lim until all are in STATE;
# records the largest number of slot holders seen (max_active) and whether
# pending jobs with queue positions were seen (saw_pending).
sample_until() {
	local want=$1 end=$((SECONDS + 150)) js n pending failed rest
	max_active=0 saw_pending=0 samples=0
	while :; do
		js=$(ctl --json jobs lim)
		samples=$((samples + 1))
		read -r n pending failed rest < <(jq -r --argjson s "$SLOT" --arg w "$want" '[
			([.jobs[] | select(.state as $x | $s | index($x))] | length),
			([.jobs[] | select(.pending == true and .state == "queued" and .queue_position >= 1)] | length),
			([.jobs[] | select(.state == "failed")] | length),
			([.jobs[] | select(.state != $w)] | length)] | @tsv' <<<"$js")
		[ "$n" -le "$max_active" ] || max_active=$n
		[ "$n" -le 2 ] || fail "$n jobs hold slots at once: $(jq -c '[.jobs[] | {vm, state}]' <<<"$js")"
		[ "$pending" = 0 ] || saw_pending=1
		[ "$failed" = 0 ] || fail "a job failed: $(jq -c '[.jobs[] | select(.state == "failed") | {vm, error}]' <<<"$js")"
		[ "$rest" != 0 ] || return 0
		[ $SECONDS -lt $end ] || fail "not every job reached $want: $(jq -c '[.jobs[] | {vm, state}]' <<<"$js")"
		sleep 0.05
	done
}

sample_until ready
ok "all five full copies reach ready ($samples samples)"
assert_eq "$max_active" 2 "never more than max_tasks (2) jobs hold slots during the full copies"
assert_eq "$saw_pending" 1 "the others wait as pending (排队中) with a queue position"

# Guest writes give every catch-up something to copy, and a slow guest
# shutdown keeps every cutover busy for a while.
for vm in m1 m2 m3 m4 m5; do gwrite "{\"vm\":\"$vm\",\"disk\":0,\"percent\":40,\"seed\":9}" >/dev/null; done
fault "$S_CTL" '{"delay":{"method":"ShutdownGuest","ms":1500}}'
for vm in m1 m2 m3 m4 m5; do ctl migrate lim "$vm" >/dev/null || fail "migrate $vm refused"; done
sample_until complete
fault "$S_CTL" '{"clear":true}'
ok "all five migrations complete ($samples samples)"
assert_eq "$max_active" 2 "never more than two jobs hold slots during the catch-ups and cutovers"
assert_eq "$saw_pending" 1 "catch-ups wait as pending for a slot"
for vm in m1 m2 m4 m5; do check_complete lim "$vm" 1; done
check_complete lim m3 2

# --- Config reloads while a paced copy runs (the rule's windows must stay
# valid for the running copy: every reload makes new rule objects).
mig_rule paced q1 "fast_transfer: true" \
	'[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 1MiB/s } ]'
wait_job paced q1 transferring 60
wait_until 30 sh -c "[ \$('$BIN/vmferryctl' -s '$SOCK' --json jobs paced | jq '.jobs[0].bytes_done') -gt 1048576 ]" ||
	fail "the paced copy did not start"
reload_config
reload_config
reload_config
ok "three config reloads while the paced copy runs"
wait_job paced q1 ready 90
ok "the paced copy reaches ready after the reloads"
ctl migrate paced q1 >/dev/null || fail "migrate refused"
wait_job paced q1 complete 90
check_complete paced q1 1 "paced copy across reloads"

# --- A window with limit 0 over the whole week: the copy is paused.
mig_rule pause p1 "fast_transfer: true" \
	'[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 0 } ]'
wait_job pause p1 transferring 60
stats_reset
j0=$(job_json pause p1)
sleep 6
j1=$(job_json pause p1)
assert_eq "$(flat_bytes p1)" 0 "limit 0: no byte of the source disks is read"
assert_eq "$(jq -r .state <<<"$j1")" transferring "limit 0: the job stays in transferring"
assert_eq "$(jq -r .bytes_done <<<"$j1")" "$(jq -r .bytes_done <<<"$j0")" "limit 0: its progress stays where it was"
assert_eq "$(jq -r .rate_bps <<<"$j1")" 0 "limit 0: the rate shows 0"
assert_match "$(ctl log pause p1)" "transfer paused" "the log says the transfer is paused"

# The window is removed from the rule file: the copy resumes by itself.
mig_rule pause p1 "fast_transfer: true"
wait_until 10 sh -c "'$BIN/vmferryctl' -s '$SOCK' log pause p1 | grep -q 'rule pause changed'" ||
	fail "the edited rule file was not reloaded"
ok "the edited rule file is reloaded"
wait_job pause p1 ready 90
ok "without the window the copy completes"
assert_match "$(ctl log pause p1)" "transfer resumed" "the log says the transfer resumed"
ctl migrate pause p1 >/dev/null || fail "migrate refused"
wait_job pause p1 complete 90
check_complete pause p1 2 "after the pause"
