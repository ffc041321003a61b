#!/usr/bin/env bash
# A CBT reset (the old changeId is refused with a FileFault) means a full
# copy of that disk, logged as such — never a silent partial copy.  Reset
# between the full copy and `migrate` (the catch-up copies that disk in
# full, the other disk incrementally), and reset again while the source
# shuts down (the final pass copies that disk in full).  The target ends
# equal to the source.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

G=65536
C0=5242931   # 5 MiB + 51
C1=3145771   # 3 MiB + 43
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"db01","host":"H0","power":"on","cbt":true,
         "disks":[{"capacity":$C0,"seed":11,"allocated":0.4},{"capacity":$C1,"seed":12,"allocated":0.6}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
mig_rule cbt db01 "fast_transfer: true"
file_bytes() { curl -sf "$S_CTL/stats" | jq -r --arg f "ds0/db01/$1" '.files[$f] // 0'; }
start_daemon "$CONF"

wait_job cbt db01 ready 120
full0=$(file_bytes db01-flat.vmdk)
full1=$(file_bytes db01_1-flat.vmdk)
[ "$full1" -gt 0 ] && [ "$full1" -lt "$C1" ] && ok "the full copy read the allocated part of disk 1 ($full1 bytes)" ||
	fail "the full copy read $full1 bytes of disk 1"

# Guest writes on both disks, then CBT of disk 1 is reset.
stats_reset
gwrite '{"vm":"db01","disk":0,"offset":1000000,"length":100000,"seed":21}' >/dev/null
gwrite '{"vm":"db01","disk":1,"offset":0,"length":4096,"seed":22}' >/dev/null
fault "$S_CTL" '{"cbt_reset":{"vm":"db01","disk":1}}'
ok "CBT of disk 1 reset after the full copy"

# While the source shuts down, disk 0 is written and its CBT reset too.
fault "$S_CTL" '{"delay":{"method":"ShutdownGuest","ms":3000}}'
ctl migrate cbt db01 >/dev/null || fail "migrate refused"
wait_job cbt db01 "cutting_over complete" 120
[ "$(job_state cbt db01)" = cutting_over ] || fail "the job passed cutting_over too early"
catch0=$(file_bytes db01-flat.vmdk)
catch1=$(file_bytes db01_1-flat.vmdk)
gwrite '{"vm":"db01","disk":0,"offset":3000000,"length":5000,"seed":23}' >/dev/null
fault "$S_CTL" '{"cbt_reset":{"vm":"db01","disk":0}}'
wait_job cbt db01 complete 120
fault "$S_CTL" '{"clear":true}'
ok "the migration completes after the resets"
check_complete cbt db01 2 "after CBT resets"

log=$(ctl log cbt db01 -n 200)
assert_match "$log" "disk 1: change tracking was reset.*copying it in full" "the log says disk 1 is copied in full after its CBT reset"
assert_match "$log" "disk 0: change tracking was reset.*copying it in full" "the log says disk 0 is copied in full after its CBT reset"

# The catch-up: disk 0 incremental (the two grains written), disk 1 in full.
assert_eq "$catch0" $((2 * G)) "the catch-up read only the changed grains of disk 0"
[ "$catch1" -ge "$full1" ] && ok "the catch-up read disk 1 in full ($catch1 bytes, the full copy $full1)" ||
	fail "after the reset the catch-up read only $catch1 bytes of disk 1 (full copy $full1)"
# The final pass: disk 0 in full, disk 1 incremental (nothing changed).
final0=$(($(file_bytes db01-flat.vmdk) - catch0))
final1=$(($(file_bytes db01_1-flat.vmdk) - catch1))
[ "$final0" -ge "$full0" ] && ok "the final pass read disk 0 in full ($final0 bytes)" ||
	fail "after the reset the final pass read only $final0 bytes of disk 0 (full copy $full0)"
assert_eq "$final1" 0 "the final pass read nothing of the unchanged disk 1"
