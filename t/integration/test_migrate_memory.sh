#!/usr/bin/env bash
# memory_snapshot (开启内存快照): at cutover the source is suspended, so its
# memory goes to a suspend file and its disks stop where that memory
# expects them; the final sync copies the disks, the memory state is copied
# into the target VM's directory, and the target resumes from it when it is
# powered on.  The peer records the SHA-256 of the state each VM resumed
# from.  A kill -9 while the memory state is carried does not matter: the
# next run looks at the target first and carries it again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"app01","host":"H0","power":"on","memory_mb":1,"cbt":true,
         "disks":[{"capacity":3145771,"seed":31,"allocated":0.5},{"capacity":1048593,"seed":32,"allocated":0.3}]},
        {"name":"app02","host":"H0","power":"on","memory_mb":1,
         "disks":[{"capacity":2097169,"seed":33,"allocated":0.5}]},
        {"name":"app03","host":"H0","power":"on","memory_mb":1,
         "disks":[{"capacity":1048593,"seed":34,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
vm_field() { curl -sf "$1/vms" | jq -r --arg n "$2" --arg f "$3" '[.[] | select(.name == $n) | .[$f]][0] // ""'; }

# 1. Cutover poweroff with memory_snapshot: suspend, carry, resume.
mig_rule mem app01 "fast_transfer: true, memory_snapshot: true, cutover: poweroff, auto_migrate: true"
start_daemon "$CONF"
wait_job mem app01 complete 180
assert_eq "$(vm_power "$S_CTL" app01)" suspended "the source was suspended at cutover, not powered off"
src_mem=$(vm_field "$S_CTL" app01 suspend_sha256)
[ -n "$src_mem" ] || fail "the suspended source has no memory state"
check_complete mem app01 2 "memory_snapshot"
assert_eq "$(vm_power "$D_CTL" app01)" poweredOn "the target VM is powered on"
assert_eq "$(vm_field "$D_CTL" app01 resumed_sha256)" "$src_mem" \
	"the target resumed from the source's memory state (same SHA-256)"
log=$(ctl log mem app01 -n 200)
assert_match "$log" "suspending the source VM" "the log says the source was suspended"
assert_match "$log" "resumes from the source's memory state" "the log says the target resumes from the memory state"
assert_match "$log" "downtime [0-9.]+ s" "the downtime is logged"
[ -z "$(ls "$STATE/tmp/mem" 2>/dev/null)" ] && ok "temp_dir holds nothing of the finished job" ||
	fail "left in temp_dir: $(ls -R "$STATE/tmp/mem")"

# 2. kill -9 while the memory state is carried: the upload is held back,
# the daemon is killed, and the restarted job carries it again.
fault "$D_CTL" '{"delay":{"method":"ReconfigVM_Task","ms":4000}}'
mig_rule mem2 app02 "memory_snapshot: true, cutover: shutdown, auto_migrate: true"
reload_config
wait_until 120 sh -c "'$BIN/vmferryctl' -s '$SOCK' log mem2 app02 -n 50 | grep -q 'uploading the memory state'" ||
	fail "mem2/app02 never reached the memory upload ($(job_state mem2 app02))"
# The ReconfigVM delay holds it between the upload and pointing the target.
crash_daemon
ok "vmferryd killed while the memory state was carried"
fault "$D_CTL" '{"clear":true}'
start_daemon "$CONF"
wait_job mem2 app02 complete 120
check_complete mem2 app02 1 "memory_snapshot after kill -9"
assert_eq "$(vm_field "$D_CTL" app02 resumed_sha256)" "$(vm_field "$S_CTL" app02 suspend_sha256)" \
	"after the crash the target still resumed from the source's memory state"
assert_eq "$(ctl log mem2 app02 -n 300 | grep -c 'uploading the memory state')" 2 \
	"the restarted job carried the memory state again"

# 3. cutover none keeps the source running: nothing to carry, said so.
mig_rule mem3 app03 "memory_snapshot: true, cutover: none, auto_migrate: true"
reload_config
wait_job mem3 app03 complete 120
check_complete mem3 app03 1 "memory_snapshot with cutover none"
assert_eq "$(vm_power "$S_CTL" app03)" poweredOn "cutover none: the source keeps running"
assert_eq "$(vm_field "$D_CTL" app03 resumed_sha256)" "" "cutover none: the target booted, it resumed from nothing"
assert_match "$(ctl log mem3 app03 -n 100)" "no memory state to carry" "the log says there is no memory state to carry"
