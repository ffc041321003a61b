#!/usr/bin/env bash
# Group restore (组恢复, seed 002): `restore RULE` without a VM restores
# every VM of a three-VM rule to new VMs, queued through the slot limits
# (max_tasks: 2: never more than two restoring at once), each with its
# outcome; every restored VM equals its point.  Then a new VM restored
# onto another platform, powered on; and refusals: an unknown point, a
# restore asked while the job is not at rest, --name with the original.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"g1","host":"H0","power":"on","disks":[{"capacity":$((24 * MiB + 512)),"seed":11,"allocated":0.9}]},
        {"name":"g2","host":"H0","power":"on","disks":[{"capacity":$((20 * MiB)),"seed":12,"allocated":0.9},{"capacity":$((5 * MiB + 4096)),"seed":13,"allocated":0.5}]},
        {"name":"g3","host":"H0","power":"on","disks":[{"capacity":$((28 * MiB + 1024)),"seed":14,"allocated":0.9}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config "max_tasks: 2
max_tasks_per_host: 2
transfer_buffer: 1MiB
host_buffer_cap: 8MiB"
# Slow enough that the restores overlap (the limit is per rule).
bak_rule grp "g1 g2 g3" "fast_transfer: true" 7 'bandwidth: [{ days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 16MiB/s }]'
start_daemon "$CONF"
for vm in g1 g2 g3; do wait_job grp $vm idle 30; done
ctl run grp >/dev/null
for vm in g1 g2 g3; do wait_job grp $vm complete 120; done
declare -A want
for vm in g1 g2 g3; do want[$vm]=$(src_hashes $vm $([ $vm = g2 ] && echo 2 || echo 1)); done
ok "the rule's three VMs are backed up"

out=$(ctl --json restore grp --target new)
assert_eq "$(jq -r '[.results[].result] | join(",")' <<<"$out")" "done,done,done" "restore RULE asks a restore of every VM of the rule"
max=0
end=$((SECONDS + 120))
while :; do
	states=$(ctl --json jobs grp | jq -r '[.jobs[].state] | join(" ")')
	n=$(tr " " "\n" <<<"$states" | grep -c "^restoring$" || true)
	[ "$n" -gt "$max" ] && max=$n
	[ "$states" = "idle idle idle" ] && break
	! grep -q failed <<<"$states" || fail "a group restore failed: $(ctl --json jobs grp | jq -c '[.jobs[] | {vm, error}]')"
	[ $SECONDS -lt $end ] || fail "the group restore did not end: $states"
	sleep 0.1
done
[ "$max" -le 2 ] && ok "never more than two restoring at once (max_tasks: 2; seen $max)" || fail "$max restoring at once with max_tasks: 2"
[ "$max" -ge 2 ] && ok "two restores ran side by side" || fail "the restores never overlapped (max $max)"
for vm in g1 g2 g3; do
	assert_eq "$(src_hashes $vm-restored $([ $vm = g2 ] && echo 2 || echo 1))" "${want[$vm]}" "group restore: $vm-restored equals $vm's point"
	assert_match "$(ctl log grp $vm -n 50)" "restore of point 1 to the new VM $vm-restored complete" "group restore: $vm's own outcome in its log"
done

# Onto another platform, powered on.
ctl restore grp g1 --target new --name g1-there --platform dst --datacenter DC0 --host H0 --datastore ds0 --power-on >/dev/null
wait_job grp g1 idle 120
assert_eq "$(dst_sha g1-there 0)" "$(cut -d' ' -f1 <<<"${want[g1]}")" "restored onto another platform, the new VM equals the point"
assert_eq "$(vm_power "$D_CTL" g1-there)" poweredOn "--power-on: the restored VM is powered on"

# A new VM of a name an earlier restore made is not written again.
ctl restore grp g2 --target new >/dev/null
wait_job grp g2 failed 60
assert_match "$(job_field grp g2 error)" "a VM named g2-restored already exists on src, made by an earlier restore of this rule" \
	"a restore to the name of a VM an earlier restore made is refused"
assert_eq "$(vm_count "$S_CTL" g2-restored)" 1 "... and that VM is left as it was"
ctl start grp g2 >/dev/null
wait_job grp g2 idle 30

# Refusals: nothing changes.
assert_match "$(ctl restore grp g1 --point 9 2>&1 || true)" "VM g1 has no point 9 \(its points: 1\)" "an unknown point is refused, naming the points there are"
assert_match "$(ctl restore grp g1 --name x 2>&1 || true)" "apply to --target new" "--name without --target new is refused"
assert_match "$(ctl restore grp --target instant 2>&1 || true)" "needs a VM" "--target instant of a whole rule is refused (instant recovery serves one VM)"
# g2 has not changed: its backup would be done at once (and a complete
# job may restore), so the peer holds its snapshot 3 s.
fault "$S_CTL" '{"delay":{"method":"CreateSnapshot_Task","ms":3000}}'
ctl run grp g2 >/dev/null
assert_match "$(ctl restore grp g2 --target new 2>&1 || true)" "g2 is (queued|preparing|saving_config|querying_changes|checking_data|transferring) .*restore is not possible in that state" \
	"a restore asked while a backup runs is refused with the state"
wait_job grp g2 complete 120
fault "$S_CTL" '{"clear":true}'
stop_daemon
echo "1..$NTEST"
