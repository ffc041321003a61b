#!/usr/bin/env bash
# kill -9 of vmferryd at the worst moments of a migration, then a restart:
# mid-transfer (it resumes from its checkpoint, not from the start), while
# the target VM is being created, while the source snapshot is being taken
# (for the full copy and for the catch-up), while the source shuts down and
# while the target powers on at cutover.  Every migration completes with
# identical bytes, no snapshot left on the source and exactly one target VM.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

BIG=25165947   # 24 MiB + 123
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"big01","host":"H0","power":"on","cbt":true,"disks":[{"capacity":$BIG,"seed":1,"allocated":1.0}]},
        {"name":"cvm01","host":"H0","power":"on","disks":[{"capacity":3145739,"seed":2,"allocated":0.5},{"capacity":1048583,"seed":3}]},
        {"name":"snap01","host":"H0","power":"on","cbt":true,"disks":[{"capacity":4194311,"seed":4,"allocated":0.4},{"capacity":2097169,"seed":5}]},
        {"name":"down01","host":"H0","power":"on","disks":[{"capacity":3145751,"seed":6,"allocated":0.3}]},
        {"name":"up01","host":"H0","power":"on","disks":[{"capacity":5242897,"seed":7,"allocated":0.6},{"capacity":1048589,"seed":8}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
start_daemon "$CONF"

# crash_in_call CTL METHOD BEFORE: wait until the peer got METHOD once more
# than BEFORE (it is held by a delay fault), then kill -9 the daemon.
crash_in_call() {
	wait_until 60 sh -c "[ \$(curl -sf '$1/stats' | jq -r '.methods[\"$2\"] // 0') -gt $3 ]" ||
		fail "$2 was not called: $(ctl --json jobs | jq -c '[.jobs[] | {vm, state, error}]')"
	sleep 0.5
	crash_daemon
	ok "vmferryd killed (-9) during $2"
}

# --- 1. mid-transfer: a bandwidth limit slows the full copy down.
mig_rule xfer big01 "fast_transfer: true" \
	'[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 2MiB/s } ]'
wait_job xfer big01 transferring 60
wait_until 60 sh -c "[ \$('$BIN/vmferryctl' -s '$SOCK' --json jobs xfer | jq '.jobs[0].progress') -ge 50 ]" ||
	fail "the transfer did not get half way"
crash_daemon
ok "vmferryd killed (-9) past half of the full copy"
sleep 0.5
before=$(flat_bytes big01)
start_daemon "$CONF"
wait_job xfer big01 ready 120
resume=$(resume_offsets xfer big01 0 | tail -1)
[ -n "$resume" ] && [ "$resume" -gt 0 ] && ok "the copy resumed at its checkpoint (offset $resume)" ||
	fail "no resume from a checkpoint in the log: $(ctl log xfer big01 -n 5)"
after=$(($(flat_bytes big01) - before))
assert_eq "$after" $((BIG - resume)) "after the restart only the rest of the disk is read"
# What is read twice is what the source served above the last checkpoint.
# A checkpoint is recorded every CHECKPOINT_S = 2 s (engine/jobs/migrate.c)
# at the first chunk completion after that, so at the 2 MiB/s limit one
# checkpoint window is 2 s x 2 MiB/s = 4 MiB; on top of it come the chunks
# in flight at the last checkpoint (host_buffer_cap 8 MiB / (4 tasks per
# host x transfer_buffer 1 MiB) = 2 chunks of 1 MiB) and the up to 0.5 s
# (one 1 MiB chunk at 2 MiB/s) until the completion that records the
# due checkpoint: 7 MiB at most.
twice=$((before - resume))
[ "$twice" -le $((7 * 1048576)) ] && ok "little was read twice ($twice bytes, at most one checkpoint window)" ||
	fail "$twice bytes were read twice: more than one checkpoint window (7 MiB)"
ctl migrate xfer big01 >/dev/null || fail "migrate refused"
wait_job xfer big01 complete 120
check_complete xfer big01 1 "crash mid-transfer"

# --- 2. while CreateVM_Task runs on the target.
n=$(method_count "$D_CTL" CreateVM_Task)
fault "$D_CTL" '{"delay":{"method":"CreateVM_Task","ms":3000}}'
mig_rule cvm cvm01 "fast_transfer: true"
crash_in_call "$D_CTL" CreateVM_Task "$n"
sleep 3.5
fault "$D_CTL" '{"clear":true}'
assert_eq "$(vm_count "$D_CTL" cvm01)" 1 "the interrupted CreateVM_Task went through on the target"
start_daemon "$CONF"
wait_job cvm cvm01 ready 120
assert_match "$(ctl log cvm cvm01)" "created by this rule: adopting it" "the restarted job adopts its own target VM"
ctl migrate cvm cvm01 >/dev/null || fail "migrate refused"
wait_job cvm cvm01 complete 120
check_complete cvm cvm01 2 "crash during CreateVM"

# --- 3. while the snapshot of the full copy is taken, and again while the
# snapshot of the catch-up is taken.
n=$(method_count "$S_CTL" CreateSnapshot_Task)
fault "$S_CTL" '{"delay":{"method":"CreateSnapshot_Task","ms":3000}}'
mig_rule snap snap01 "fast_transfer: true"
crash_in_call "$S_CTL" CreateSnapshot_Task "$n"
sleep 3.5
fault "$S_CTL" '{"clear":true}'
assert_eq "$(snap_count snap01)" 1 "the interrupted CreateSnapshot_Task left a snapshot behind"
start_daemon "$CONF"
wait_job snap snap01 ready 120
assert_eq "$(snap_count snap01)" 0 "the restarted job removed the leftover snapshot ($(snap_names snap01))"
gwrite '{"vm":"snap01","disk":0,"percent":10,"seed":44}' >/dev/null
gwrite '{"vm":"snap01","disk":1,"offset":777,"length":100000,"seed":45}' >/dev/null
n=$(method_count "$S_CTL" CreateSnapshot_Task)
fault "$S_CTL" '{"delay":{"method":"CreateSnapshot_Task","ms":3000}}'
ctl migrate snap snap01 >/dev/null || fail "migrate refused"
crash_in_call "$S_CTL" CreateSnapshot_Task "$n"
sleep 3.5
fault "$S_CTL" '{"clear":true}'
start_daemon "$CONF"
wait_job snap snap01 complete 120
check_complete snap snap01 2 "crash during CreateSnapshot (full copy and catch-up)"
assert_nomatch "$(ctl log snap snap01 -n 200)" "copying (it|its allocated areas) in full" \
	"the catch-up after the crash still reads only the changes"

# --- 4. while the source shuts down at cutover.
mig_rule down down01 "fast_transfer: true"
wait_job down down01 ready 120
gwrite '{"vm":"down01","disk":0,"offset":65536,"length":70000,"seed":61}' >/dev/null
n=$(method_count "$S_CTL" ShutdownGuest)
fault "$S_CTL" '{"delay":{"method":"ShutdownGuest","ms":3000}}'
ctl migrate down down01 >/dev/null || fail "migrate refused"
crash_in_call "$S_CTL" ShutdownGuest "$n"
sleep 3.5
fault "$S_CTL" '{"clear":true}'
start_daemon "$CONF"
wait_job down down01 complete 120
check_complete down down01 1 "crash during the source shutdown"
assert_eq "$(vm_power "$S_CTL" down01)" poweredOff "the source is off"
assert_eq "$(vm_power "$D_CTL" down01)" poweredOn "the target is on"

# --- 5. while the target powers on at cutover (after the upload).
mig_rule up up01 "fast_transfer: true"
wait_job up up01 ready 120
gwrite '{"vm":"up01","disk":1,"percent":20,"seed":71}' >/dev/null
n=$(method_count "$D_CTL" PowerOnVM_Task)
fault "$D_CTL" '{"delay":{"method":"PowerOnVM_Task","ms":3000}}'
ctl migrate up up01 >/dev/null || fail "migrate refused"
crash_in_call "$D_CTL" PowerOnVM_Task "$n"
sleep 3.5
fault "$D_CTL" '{"clear":true}'
start_daemon "$CONF"
wait_job up up01 complete 120
check_complete up up01 2 "crash during the target power-on"
assert_eq "$(vm_power "$D_CTL" up01)" poweredOn "the target is on"
assert_eq "$(ctl --json stats up up01 | jq -r '.jobs[0].successes')" 1 "one success is counted"

# Nothing else appeared on the target.
assert_eq "$(curl -sf "$D_CTL/vms" | jq -r '[.[].name] | join(",")')" "big01,cvm01,down01,snap01,up01" \
	"the target holds exactly one VM per migration"
