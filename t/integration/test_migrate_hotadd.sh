#!/usr/bin/env bash
# Hot-add (SPEC §6): the appliance runs as a VM in the target vCenter; a
# target on a VMFS6 datastore (seSparse deltas, which nobody outside VMware
# writes) gets its disks attached to that VM and written in place through
# the devices that appear (the peer serves them over FUSE, through the same
# chain logic as guest writes), then detached.  The full copy, the catch-up
# and the cutover all go that way: nothing is uploaded, whole or as a
# delta.  qemu-img and the peer's hashes find the target equal to the
# source; a kill -9 while a disk is attached leaves nothing attached after
# the restart; a refused attach, a device that never appears and a failing
# detach each end with the next transport or a retry, logged, and nothing
# left attached; whole_upload: false refuses a target only the whole upload
# could write.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
command -v qemu-img >/dev/null || skip_test "qemu-img (qemu-utils) is not installed"

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"hot01","host":"H0","power":"on","disks":[{"capacity":$((24 * MiB + 512)),"seed":61,"allocated":0.1},{"capacity":$((6 * MiB)),"seed":62,"allocated":0.6}]},
        {"name":"kill01","host":"H0","power":"on","disks":[{"capacity":$((24 * MiB)),"seed":63,"allocated":1.0}]},
        {"name":"ref01","host":"H0","power":"on","disks":[{"capacity":$((2 * MiB)),"seed":64,"allocated":0.5}]},
        {"name":"nodev01","host":"H0","power":"on","disks":[{"capacity":$((2 * MiB)),"seed":65,"allocated":0.5}]},
        {"name":"det01","host":"H0","power":"on","disks":[{"capacity":$((2 * MiB)),"seed":66,"allocated":0.5}]},
        {"name":"strict01","host":"H0","power":"on","disks":[{"capacity":$((2 * MiB)),"seed":67,"allocated":0.5}]}]}
JSON
mig_start_hotadd_peers "$T/fixture.json"
start_daemon "$CONF"

attached() { curl -sf "$D_CTL/hotadd" | jq '.attached | length'; }
put_bytes() { curl -sf "$D_CTL/stats" | jq -r '.requests.folder_put_bytes // 0'; }
ctl_log_file() { grep "job migration/$1/$2:" "$T/daemon.log"; }

# The full copy, a 1 % catch-up and the cutover, all through hot-add.
curl -sf -XPOST "$D_CTL/stats/reset" >/dev/null
mig_rule hot hot01 "fast_transfer: true, cutover: poweroff"
wait_job hot hot01 ready 120
ok "hot01: the full copy reaches ready"
log=$(ctl log hot hot01 -n 400)
for d in 0 1; do
	assert_match "$log" "disk $d is written through hotadd: attached to the appliance VM" "the log names hot-add as disk $d's transport, and why"
done
assert_match "$log" "hot-add: the appliance runs as VM vmferry-appliance" "the engine found the VM it runs in by its BIOS UUID"
assert_match "$(ctl --json show hot hot01 | jq -r '.details.target_disks[].via' | sort -u)" "^hotadd$" "vmferryctl show says each disk goes through hot-add"
assert_match "$(ctl show hot hot01)" "target_writes +in place \\(hot-add\\): the datastore takes no snapshot deltas" "... and that the datastore takes no deltas"
assert_match "$(ctl show hot hot01)" "target_writes_why +datastore ds0 is VMFS 6: its snapshot deltas are seSparse" "... because it is VMFS 6"
assert_eq "$(attached)" 0 "nothing stays attached to the appliance VM at ready"
assert_eq "$(put_bytes)" 0 "nothing was uploaded over HTTPS"
for d in 0 1; do
	assert_eq "$(dst_sha hot01 $d)" "$(src_sha hot01 $d)" "after the full copy, target disk $d holds the source's bytes (peer hashes)"
	qcompare hot01 $d && ok "after the full copy, qemu-img finds target disk $d equal to the source, its chain clean" ||
		fail "qemu-img: target disk $d differs after the full copy"
done
gwrite '{"vm":"hot01","disk":0,"offset":1048576,"length":262144,"seed":71}' >/dev/null
gwrite '{"vm":"hot01","disk":1,"offset":4096,"length":4096,"seed":72}' >/dev/null
ctl migrate hot hot01 >/dev/null
wait_job hot hot01 complete 120
ok "hot01: the migration completes"
assert_eq "$(put_bytes)" 0 "catch-up and cutover uploaded nothing over HTTPS"
assert_nomatch "$(ctl log hot hot01 -n 400)" "uploading (disk|the delta)" "no disk went whole or as a delta"
for d in 0 1; do
	assert_eq "$(dst_sha hot01 $d)" "$(src_sha hot01 $d)" "after cutover, target disk $d holds the source's bytes"
	qcompare hot01 $d && ok "after cutover, qemu-img finds target disk $d equal to the source" || fail "qemu-img: disk $d differs after cutover"
done
assert_eq "$(attached)" 0 "nothing is attached to the appliance VM after cutover"
assert_eq "$(vm_power "$D_CTL" hot01)" poweredOn "the target VM is powered on (its disk no longer held by the appliance)"
assert_eq "$(curl -sf "$D_CTL/stats" | jq -r '.requests.hotadd_destroyed')" 0 "no attached disk was ever destroyed"

# kill -9 while a disk is attached and written.
mig_rule kill kill01 "fast_transfer: true, cutover: poweroff" '[{ days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 4MiB/s }]'
wait_until 60 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs kill | jq '.jobs[0].bytes_done // 0')\" -gt 4000000 ]" ||
	fail "kill01's copy did not get past 4 MB"
crash_daemon
[ "$(attached)" -ge 1 ] && ok "the kill landed while kill01's disk was attached to the appliance VM" ||
	fail "nothing was attached when vmferryd was killed"
# Restarted, it adopts the attached disk and copies on; then it is killed
# again while the detach (a ReconfigVM_Task the peer holds) is under way.
fault "$D_CTL" '{"delay":{"method":"ReconfigVM_Task","ms":2500}}'
start_daemon "$CONF"
wait_until 60 sh -c "[ \"\$(curl -sf '$D_CTL/fault' | jq '.injected.delay // 0')\" -ge 1 ]" ||
	fail "kill01 never detached its disk after the restart"
sleep 1
crash_daemon
assert_match "$(ctl_log_file kill kill01)" "hot-add: \\[ds0\\] kill01/kill01.vmdk is " "after the first kill the daemon adopted the disk still attached"
assert_nomatch "$(ctl_log_file kill kill01)" "sync pass 1 finished" "the second kill landed before the pass finished (during the detach)"
fault "$D_CTL" '{"delay":{"method":"ReconfigVM_Task","ms":0}}'
# vCenter runs a task it accepted whether its client lives or not: the
# remove the killed daemon sent ends before anything else reconfigures.
wait_until 10 sh -c "[ \"\$(curl -sf '$D_CTL/hotadd' | jq '.attached | length')\" = 0 ]" ||
	fail "the remove sent before the second kill never ended"
start_daemon "$CONF"
wait_job kill kill01 ready 120
ok "kill01 reaches ready after kills while its disk was attached and while it was detached"
assert_eq "$(attached)" 0 "after the restart nothing is left attached to the appliance VM"
assert_match "$(ctl_log_file kill kill01)" "hot-add: .* detached from the appliance VM" "the disk was detached after the restart"
assert_eq "$(dst_sha kill01 0)" "$(src_sha kill01 0)" "kill01's target holds the source's bytes"
assert_eq "$(curl -sf "$D_CTL/vms" | jq '[.[] | select(.name == "kill01") | .disks | length][0]')" 1 "the target VM has its disk"

# Faults: a refused attach and a device that never appears fall back (on
# VMFS6, known from the datastore's type, straight to the whole upload,
# with the warning: no delta is tried); a failing detach is retried.
# Nothing stays attached.
fault "$D_CTL" '{"hotadd":{"attach":"fail"}}'
mig_rule ref ref01 "fast_transfer: true, cutover: poweroff"
wait_job ref ref01 ready 120
log=$(ctl log ref ref01 -n 300)
assert_match "$log" "hot-add of .*ref01.*refused" "a refused attach is logged"
assert_match "$log" "disk 0 is written through whole: no hot-add \\(the appliance VM vmferry-appliance refused it.*\\); datastore ds0 is VMFS 6: its snapshot deltas are seSparse, which nobody outside VMware writes; uploaded whole at cutover: the downtime grows" \
	"... the disk takes the next transport, on VMFS6 the whole upload, naming why and what the downtime grows with"
assert_nomatch "$log" "written through delta|snapshot deltas cannot be written, so" "... no delta is tried on the VMFS6 datastore"
assert_eq "$(attached)" 0 "nothing attached after the refused attach"
fault "$D_CTL" '{"hotadd":{"attach":"no_device"}}'
mig_rule nodev nodev01 "fast_transfer: true, cutover: poweroff"
wait_job nodev nodev01 ready 120
assert_match "$(ctl log nodev nodev01 -n 300)" "did not appear within [0-9]+ s" "a device that never appears is logged"
assert_eq "$(attached)" 0 "the disk whose device never appeared was detached"
fault "$D_CTL" '{"hotadd":{"detach":"fail"}}'
mig_rule det det01 "fast_transfer: true, cutover: poweroff"
wait_job det det01 ready 120
assert_match "$(ctl log det det01 -n 300)" "detaching .* trying again" "a failed detach is retried, logged"
assert_eq "$(attached)" 0 "... and ends with nothing attached"
for vm in ref01 nodev01 det01; do
	ctl migrate "${vm%01}" "$vm" >/dev/null
done
for vm in ref01 nodev01 det01; do
	wait_job "${vm%01}" "$vm" complete 120
	assert_eq "$(dst_sha $vm 0)" "$(src_sha $vm 0)" "$vm: migrated, its target holds the source's bytes"
done
stop_daemon

# Without hot-add the VMFS6 target can only take whole uploads: a rule
# that forbids them is refused, naming why.
MIG_NODE_EXTRA="hotadd: false" mig_config
rm -f "$CONF"/20-*.yaml
mig_rule strict strict01 "fast_transfer: true, cutover: poweroff, whole_upload: false"
start_daemon "$CONF"
wait_job strict strict01 failed 120
log=$(ctl log strict strict01 -n 300)
assert_match "$log" "disk 0 cannot be written: no hot-add \\(hot-add is off for node local \\(hotadd: false\\)\\); datastore ds0 is VMFS 6: its snapshot deltas are seSparse.*whole_upload: false" \
	"whole_upload: false on a VMFS6 target without hot-add: refused with the reason, naming the datastore"
assert_nomatch "$log" "sync pass 1:" "... before the first pass copied anything"
stop_daemon
echo "1..$NTEST"
