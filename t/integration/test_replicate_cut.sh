#!/usr/bin/env bash
# An operation on restore points cut half-way (issue #14): the rule's file
# goes away while a revert waits on the target's RevertToSnapshot_Task,
# and the job stops there.  When the rule comes back the job first
# finishes the revert (恢复快照, then 快照清除 of the later points) before
# any cycle, so the target holds the point asked for and the next cycle
# counts its changes from it.  A failback cut the same way is finished
# too.  A user's revert while the job starts is refused.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"cut01","host":"H0","power":"on","disks":[{"capacity":$((4 * MiB + 512)),"seed":141,"allocated":0.4}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
rep_rule rep cut01 "fast_transfer: true, auto_sync: false" 4
start_daemon "$CONF"

declare -A at
cycle() { wait_job rep cut01 complete 120; at[$1]=$(src_sha cut01 0); }
points() { ctl --json show rep cut01 --kind replication | jq -r '[.details.points[].point] | join(",")'; }
cycle 1
for c in 2 3; do
	gwrite "{\"vm\":\"cut01\",\"disk\":0,\"percent\":5,\"seed\":$((150 + c))}" >/dev/null
	ctl run rep cut01 >/dev/null
	sleep 0.3
	cycle $c
done
assert_eq "$(points)" "1,2,3" "three cycles, three restore points"

# The revert waits on the target; the rule's file goes away meanwhile.
fault "$D_CTL" '{"delay":{"method":"RevertToSnapshot_Task","ms":3000}}'
assert_match "$(ctl revert rep cut01 --point 1)" "cut01: complete -> reverting" "revert to point 1 starts"
rm "$CONF/20-rep.yaml"
wait_job rep cut01 stopped 30
ok "the rule's file went away during the revert: the job stops"
fault "$D_CTL" '{"clear":true}'
sleep 3.5
rep_rule rep cut01 "fast_transfer: true, auto_sync: false" 4
wait_job rep cut01 "idle complete" 60
assert_match "$(ctl log rep cut01 -n 60)" "its revert to a restore point was cut; it is finished first" \
	"the rule is back: the job finishes the cut revert before anything else"
assert_eq "$(points)" "1" "after the finished revert only point 1 remains"
assert_eq "$(dst_sha cut01 0)" "${at[1]}" "the target holds the source as of cycle 1"
gwrite '{"vm":"cut01","disk":0,"percent":5,"seed":160}' >/dev/null
ctl run rep cut01 >/dev/null
sleep 0.3
cycle 4
assert_eq "$(dst_sha cut01 0)" "${at[4]}" "the next cycle counts its changes from point 1: the target equals the source"
assert_eq "$(points)" "1,4" "... and makes the next restore point (named by its cycle)"

# A failback cut the same way.
gwrite '{"vm":"cut01","disk":0,"percent":5,"seed":161}' >/dev/null
ctl run rep cut01 >/dev/null
sleep 0.3
cycle 5
assert_match "$(ctl failover rep cut01 --point 1)" "cut01: complete -> failover_temporary" "failover to point 1"
wait_until 30 sh -c "[ \"\$(curl -sf '$D_CTL/vms' | jq -r '[.[] | select(.name == \"cut01\") | .power][0]')\" = poweredOn ]" ||
	fail "the failed-over VM is not powered on"
fault "$D_CTL" '{"delay":{"method":"PowerOffVM_Task","ms":3000}}'
assert_match "$(ctl failback rep cut01)" "cut01: failover_temporary -> failing_back" "failback starts"
rm "$CONF/20-rep.yaml"
wait_job rep cut01 stopped 30
ok "the rule's file went away during the failback: the job stops"
fault "$D_CTL" '{"clear":true}'
sleep 3.5
rep_rule rep cut01 "fast_transfer: true, auto_sync: false" 4
wait_job rep cut01 "idle complete" 60
assert_match "$(ctl log rep cut01 -n 60)" "its failback was cut; it is finished first" "the cut failback is finished first"
assert_eq "$(vm_power "$D_CTL" cut01)" poweredOff "the target is off again"
assert_eq "$(dst_sha cut01 0)" "${at[5]}" "... at its latest restore point"
gwrite '{"vm":"cut01","disk":0,"percent":5,"seed":162}' >/dev/null
ctl run rep cut01 >/dev/null
sleep 0.3
cycle 6
assert_eq "$(dst_sha cut01 0)" "${at[6]}" "replication resumes: the next cycle is right"
stop_daemon
echo "1..$NTEST"
