#!/usr/bin/env bash
# Replication through hot-add into a VMFS6 target (SPEC §6, §9; issue 13
# item 4, issue 14): the peer's target datastore poses as VMFS6 (seSparse
# deltas, which nobody outside VMware writes) and the appliance runs as a
# VM there.  Every cycle attaches the top of the target's chain (the base in
# the first cycle, then the empty delta of the latest restore point) to the
# appliance VM, writes the cycle's changes through the device, detaches it
# and takes the restore point: nothing is uploaded over HTTPS, the peer's
# hashes and qemu-img (through a readable copy of the seSparse chain) find
# the target equal to the source after each cycle, keep_history points
# remain, nothing stays attached and the target stays off.  A kill -9 while
# a disk is attached mid-cycle: after the restart the cycle completes with
# one restore point.  The same target through a node without hot-add, or
# whose attach the appliance VM refuses, is refused before anything is
# copied, naming the datastore and why, and nothing is left behind.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
command -v qemu-img >/dev/null || skip_test "qemu-img (qemu-utils) is not installed"

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"rep01","host":"H0","power":"on","disks":[{"capacity":$((8 * MiB + 512)),"seed":81,"allocated":0.3},{"capacity":$((3 * MiB)),"seed":82,"allocated":0.5},{"capacity":$((5 * MiB + 4096)),"seed":83,"allocated":0.2}]},
        {"name":"kill01","host":"H0","power":"on","disks":[{"capacity":$((12 * MiB)),"seed":84,"allocated":1.0}]},
        {"name":"nohot01","host":"H0","power":"on","disks":[{"capacity":$((2 * MiB)),"seed":85,"allocated":0.5}]},
        {"name":"ref01","host":"H0","power":"on","disks":[{"capacity":$((2 * MiB)),"seed":86,"allocated":0.5}]}]}
JSON
mig_start_hotadd_peers "$T/fixture.json"
# A second node, on the same machine, without hot-add.
cat >>"$CONF/10-platforms.yaml" <<YAML
---
kind: node
name: nohot
repository: repo
temp_dir: tmp
hotadd: false
YAML
export MIG_KIND=replication MIG_RULE_EXTRA="keep_history: 2"
mig_rule rep rep01 "fast_transfer: true, auto_sync: false"
start_daemon "$CONF"

attached() { curl -sf "$D_CTL/hotadd" | jq '.attached | length'; }
put_bytes() { curl -sf "$D_CTL/stats" | jq -r '.requests.folder_put_bytes // 0'; }
# The peer's hot-add counters since the last reset: hot_stat attached|detached|destroyed|bytes_written.
hot_stat() { curl -sf "$D_CTL/stats" | jq -r --arg k "hotadd_$1" '.requests[$k]'; }
target_points() { curl -sf "$D_CTL/snapshots?vm=$1" | jq -r '[.[].name] | join(",")'; }
# The datastore paths of a target VM's current disks (the tops of their chains).
target_tops() { curl -sf "$D_CTL/vms" | jq -r --arg n "$1" '.[] | select(.name == $n) | .disks[] | .current // .file'; }
# The disks a job attached to the appliance VM, in order, one per line.
hot_attached() { ctl log "$1" "$2" -n 5000 | sed -n 's/.*hot-add: \(.*\) attached to the appliance VM .*/\1/p'; }
# points_after C: the restore points keep_history 2 leaves after cycle C.
points_after() {
	local c=$1
	if [ "$c" = 1 ]; then echo vmferry-replication-rep-rp1; else echo "vmferry-replication-rep-rp$((c - 1)),vmferry-replication-rep-rp$c"; fi
}

tops="[ds0] rep01/rep01.vmdk
[ds0] rep01/rep01_1.vmdk
[ds0] rep01/rep01_2.vmdk"
for c in 1 2 3 4; do
	wait_job rep rep01 complete 120
	ok "cycle $c reaches 完成"
	target_equal rep01 3 "cycle $c"
	assert_eq "$(hot_attached rep rep01 | tail -n 3)" "$tops" "cycle $c: each disk was written through hot-add, the top of its chain attached"
	assert_eq "$(ctl --json show rep rep01 | jq -r '[.details.target_disks[].via] | unique | join(",")')" hotadd \
		"cycle $c: show says every disk goes through hot-add"
	assert_eq "$(put_bytes)" 0 "cycle $c: nothing was uploaded over HTTPS"
	assert_eq "$(hot_stat attached) $(hot_stat detached) $(hot_stat destroyed)" "3 3 0" "cycle $c: three disks attached and detached, none destroyed"
	if [ $c -gt 1 ] && [ $c -lt 4 ]; then
		sent=$(hot_stat bytes_written)
		limit=$(jq -n --argjson ch "$changed" '$ch * 1.1 + 3 * 1048576 | floor')
		[ "$sent" -ge "$changed" ] && [ "$sent" -le "$limit" ] &&
			ok "cycle $c wrote $sent bytes through hot-add for $changed changed (≥ the changes, ≤ 1.1 × + 1 MiB per disk)" ||
			fail "cycle $c wrote $sent bytes through hot-add for $changed changed"
	fi
	assert_eq "$(attached)" 0 "cycle $c: nothing stays attached to the appliance VM"
	assert_eq "$(target_points rep01)" "$(points_after $c)" "cycle $c: the target's snapshots are the restore points kept"
	assert_eq "$(ctl --json show rep rep01 | jq -r '[.details.points[].point] | join(",")')" \
		"$(points_after $c | sed 's/vmferry-replication-rep-rp//g')" "cycle $c: show lists the same restore points"
	assert_eq "$(vm_power "$D_CTL" rep01)" poweredOff "cycle $c: the target VM stays powered off"
	assert_eq "$(snap_count rep01)" 0 "cycle $c: no engine snapshot is left on the source"
	if [ $c = 4 ]; then
		assert_match "$(ctl log rep rep01 -n 80)" "disk 1: no usable changeId and its target holds earlier data; copying the whole disk" \
			"cycle 4: a disk whose changeId was rejected is copied whole through hot-add, zeros included"
		break
	fi
	changed=0
	for d in 0 1 2; do
		b=$(gwrite "{\"vm\":\"rep01\",\"disk\":$d,\"percent\":3,\"seed\":$((90 + 10 * c + d))}" | jq .bytes)
		changed=$((changed + b))
	done
	# Zeros must reach the target too.
	b=$(gwrite "{\"vm\":\"rep01\",\"disk\":0,\"offset\":$((c * 65536)),\"length\":65536,\"seed\":1,\"fill\":\"zero\"}" | jq .bytes)
	changed=$((changed + b))
	[ $c = 3 ] && fault "$S_CTL" '{"cbt_reset":{"vm":"rep01","disk":1}}'
	tops=$(target_tops rep01)
	assert_match "$tops" "rep01-0000[0-9]+\\.vmdk" "before cycle $((c + 1)) the target's disks are deltas of its latest restore point"
	curl -sf -XPOST "$D_CTL/stats/reset" >/dev/null
	assert_match "$(ctl run rep rep01)" "rep01: complete -> queued" "vmferryctl run starts cycle $((c + 1))"
done
assert_match "$(ctl log rep rep01 -n 400)" "restore point 2 removed \\(keep_history 2\\)" "the oldest points were removed, logged"
assert_nomatch "$(ctl log rep rep01 -n 400)" "uploading|landed in the top" "no disk went as a delta or a whole upload"

# kill -9 while a disk is attached in a later cycle: after the restart the
# cycle completes, with one restore point, and nothing stays attached.
ctl_log_file() { grep "job replication/$1/$2:" "$T/daemon.log"; }
mig_rule kill kill01 "fast_transfer: true, auto_sync: false" '[{ days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 4MiB/s }]'
wait_job kill kill01 complete 120
ok "kill01: the first cycle completes"
gwrite '{"vm":"kill01","disk":0,"percent":100,"seed":99}' >/dev/null
ctl run kill kill01 >/dev/null
wait_until 60 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json jobs kill | jq -e '.jobs[0] | .state == \"transferring\" and .bytes_done > 4000000'" ||
	fail "kill01's second cycle did not get past 4 MB"
crash_daemon
assert_eq "$(attached)" 1 "the kill landed while kill01's disk was attached to the appliance VM"
assert_nomatch "$(ctl_log_file kill kill01)" "cycle 2 finished" "the kill landed before the second cycle finished"
before=$(wc -l <"$T/daemon.log")
start_daemon "$CONF"
wait_job kill kill01 complete 120
ok "kill01: the second cycle completes after the restart"
after=$(tail -n +$((before + 1)) "$T/daemon.log" | grep "job replication/kill/kill01:")
assert_match "$after" "hot-add: \\[ds0\\] kill01/kill01-000001\\.vmdk is " "after the restart the daemon found the disk still attached and wrote on through it"
assert_nomatch "$after" "kill01-000001\\.vmdk attached to the appliance VM" "... without attaching it again"
assert_eq "$(attached)" 0 "after the restart nothing is left attached to the appliance VM"
assert_eq "$(curl -sf "$D_CTL/snapshots?vm=kill01" | jq -r '[.[].name] | join(",")')" \
	"vmferry-replication-kill-rp1,vmferry-replication-kill-rp2" "kill01: one restore point per cycle, none twice"
target_equal kill01 1 "kill01 after the restart"
assert_eq "$(vm_power "$D_CTL" kill01)" poweredOff "kill01's target VM stays powered off"

# The same VMFS6 target through a node without hot-add, or with an attach
# the appliance VM refuses: its restore points could only be made by whole
# uploads, which cannot make them.  Refused before anything is copied, and
# nothing is left behind but the (empty) target VM.
refused() {
	local rule=$1 vm=$2 why=$3 err
	wait_job "$rule" "$vm" failed 120
	err=$(job_field "$rule" "$vm" error)
	assert_match "$err" "datastore ds0" "$vm: the VMFS6 target is refused, naming the datastore: $err"
	assert_match "$err" "$why" "$vm: ... saying why hot-add does not write it"
	assert_match "$err" "restore points live in the target's chain, which a whole upload cannot make" "$vm: ... and that whole uploads cannot make restore points"
	assert_nomatch "$(ctl log "$rule" "$vm" -n 300)" "sync pass 1: [0-9]+ bytes|transferring" "$vm: refused before anything was copied"
	assert_eq "$(ls "$STATE/tmp/replication/$rule/$vm")" vm-config.json "$vm: no staging image was written (temp_dir holds its configuration only)"
	assert_eq "$(snap_count "$vm")" 0 "$vm: no engine snapshot is left on the source"
	assert_eq "$(target_points "$vm")" "" "$vm: no snapshot is left on the target"
	assert_eq "$(attached)" 0 "$vm: nothing is attached to the appliance VM"
	sleep 1
	assert_eq "$(job_state "$rule" "$vm")" failed "$vm: the refused job stays failed"
}
MIG_NODE=nohot mig_rule nohot nohot01 "fast_transfer: true, auto_sync: false"
refused nohot nohot01 "hot-add is off for node nohot"
fault "$D_CTL" '{"hotadd":{"attach":"fail"}}'
mig_rule ref ref01 "fast_transfer: true, auto_sync: false"
refused ref ref01 "the appliance VM vmferry-appliance refused it"

stop_daemon
echo "1..$NTEST"
