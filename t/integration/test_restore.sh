#!/usr/bin/env bash
# Restores (seed 002, SPEC §10; issue #16): a VM with three disks of odd
# sizes backed up at three points with guest writes between; each point
# restored to a new VM equals the source at that point (the peer's SHA-256
# per disk); the original VM, powered on, is refused with the reason;
# powered off after more guest writes, restored to point 2 it equals the
# point, and the bytes written (the peer's counters) are ≤ 1.1 × the areas
# changed since the point + 1 MiB per disk; the next backup is a full, and
# right; its change tracking reset, a second restore to a later point writes
# whole disks and is right.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"rs01","host":"H0","power":"on","disks":[{"capacity":$((8 * MiB + 512)),"seed":31,"allocated":0.3},{"capacity":$((3 * MiB)),"seed":32,"allocated":0.5},{"capacity":$((13 * MiB + 4096)),"seed":33,"allocated":0.2}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
bak_rule bak rs01 "fast_transfer: true"
start_daemon "$CONF"
wait_job bak rs01 idle 30

declare -a at
for p in 1 2 3; do
	ctl run bak rs01 --mode $([ $p = 1 ] && echo full || echo incremental) >/dev/null
	wait_job bak rs01 complete 120
	at[$p]=$(src_hashes rs01 3)
	w=0
	for d in 0 1 2; do
		b=$(gwrite "{\"vm\":\"rs01\",\"disk\":$d,\"percent\":4,\"seed\":$((40 + 10 * p + d))}" | jq .bytes)
		w=$((w + b))
	done
	[ $p -ge 2 ] && since3=$((${since3:-0} + w))
done
ok "three points backed up, the guest writing between them"

for p in 1 2 3; do
	out=$(ctl restore bak rs01 --point $p --target new --name rs01-p$p)
	assert_match "$out" "rs01: (idle|complete) -> restore_queued" "restore of point $p to a new VM asked"
	wait_job bak rs01 "idle" 120
	assert_eq "$(vm_count "$S_CTL" rs01-p$p)" 1 "point $p: the new VM rs01-p$p exists"
	assert_eq "$(src_hashes rs01-p$p 3)" "${at[$p]}" "point $p restored to a new VM equals the source at that point"
done
assert_eq "$(vm_power "$S_CTL" rs01-p1)" poweredOff "a new VM restored without --power-on stays off"
assert_match "$(ctl log bak rs01 -n 200)" "restore of point 3 to the new VM rs01-p3 complete" "the job log tells the restore"
assert_eq "$(ctl --json stats bak rs01 | jq -r '.jobs[0].successes')" 6 "statistics count the restores as successes"

# The original VM is on: refused with the reason.
ctl restore bak rs01 --point 2 >/dev/null
wait_job bak rs01 "failed" 60
assert_match "$(job_field bak rs01 error)" "VM rs01 is poweredOn; a restore to the original VM needs it powered off" \
	"a powered-on original VM is refused, naming the VM and why"
ctl start bak rs01 >/dev/null
wait_job bak rs01 idle 30

# Powered off, more guest writes, then point 2 back onto it.
curl -sf -XPOST "$S_CTL/power" -d '{"vm":"rs01","state":"off"}' >/dev/null || fail "the peer cannot power rs01 off"
assert_eq "$(vm_power "$S_CTL" rs01)" poweredOff "rs01 is powered off"
changed=0
for d in 0 1 2; do
	b=$(gwrite "{\"vm\":\"rs01\",\"disk\":$d,\"percent\":2,\"seed\":$((90 + d))}" | jq .bytes)
	changed=$((changed + b))
done
stats_reset
ctl restore bak rs01 --point 2 >/dev/null
wait_job bak rs01 idle 120
assert_eq "$(src_hashes rs01 3)" "${at[2]}" "restored to the original VM, it equals point 2"
assert_match "$(ctl log bak rs01 -n 200)" "changed since point 2" "the restore wrote the areas changed since the point"
# The guest wrote since point 3, and point 3 since point 2: both are changed since point 2.
since=$((changed + since3))
sent=$(curl -sf "$S_CTL/stats" | jq -r '.requests.folder_put_bytes // 0')
limit=$(jq -n --argjson ch "$since" '$ch * 1.1 + 3 * 1048576 | floor')
[ "$sent" -le "$limit" ] && ok "the restore to the original VM wrote $sent bytes for $since changed since the point (≤ 1.1 × + 1 MiB per disk)" ||
	fail "the restore to the original VM wrote $sent bytes for $since changed since the point (limit $limit)"
assert_eq "$(snap_count rs01)" 0 "no snapshot left on the original VM"

# Its change tracking was reset: a restore to a later point cannot trust
# the changes since that point (the first restore's writes are not among
# them) and writes whole disks, and is right.
ctl restore bak rs01 --point 3 >/dev/null
wait_job bak rs01 idle 120
assert_match "$(ctl log bak rs01 -n 40)" "disk 0: change tracking since point 3 cannot be asked .*: the whole disk is written" \
	"after a restore the VM's change tracking answers no earlier changeId: whole disks"
assert_eq "$(src_hashes rs01 3)" "${at[3]}" "restored to the original VM again, it equals point 3"

# The next backup is a full, and right.
ctl run bak rs01 --mode incremental >/dev/null
wait_job bak rs01 complete 120
assert_eq "$(ctl --json show bak rs01 | jq -r '.details.points[-1].mode')" full "the backup after a restore is a full"
bak_point_equal bak rs01 4 3 "the backup after a restore"
stop_daemon
echo "1..$NTEST"
