#!/usr/bin/env bash
# Replication cycles (SPEC §9): the first cycle creates the target VM and
# fills it, each cycle ends in a restore point (a snapshot of the target
# VM), later cycles write exactly their changes into the top of the
# target's chain as vmfsSparse deltas, and keep_history points remain, the
# oldest removed (consolidated) first.  After every cycle the peer's
# hashes and qemu-img (reading the target's chain from the datastore
# files) find the target equal to the source.  A disk whose changeId the
# source rejects is copied whole into the chain.  A VMFS6 target (seSparse
# deltas, known from the datastore's type) that no hot-add reaches is
# refused before anything is copied, naming the datastore.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
command -v qemu-img >/dev/null || skip_test "qemu-img (qemu-utils) is not installed"

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"rep01","host":"H0","power":"on","disks":[{"capacity":$((8 * MiB + 512)),"seed":71,"allocated":0.3},{"capacity":$((3 * MiB)),"seed":72,"allocated":0.5},{"capacity":$((5 * MiB + 4096)),"seed":73,"allocated":0.2}]},
        {"name":"rep06","host":"H0","power":"on","disks":[{"capacity":$((4 * MiB)),"seed":74,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
rep_rule rep rep01 "fast_transfer: true, auto_sync: false" 2
start_daemon "$CONF"
put_bytes() { curl -sf "$D_CTL/stats" | jq -r '.requests.folder_put_bytes // 0'; }

for c in 1 2 3 4; do
	wait_job rep rep01 complete 120
	ok "cycle $c reaches 完成"
	target_equal rep01 3 "cycle $c"
	if [ $c = 4 ]; then
		assert_match "$(ctl log rep rep01 -n 80)" "disk 1: no usable changeId and its target holds earlier data; copying the whole disk" \
			"cycle 4: a disk whose changeId was rejected is copied whole into the chain, zeros included"
	elif [ $c -gt 1 ]; then
		sent=$(put_bytes)
		limit=$(jq -n --argjson ch "$changed" '$ch * 1.1 + 3 * 1048576 | floor')
		[ "$sent" -le "$limit" ] && ok "cycle $c uploaded $sent bytes for $changed changed (≤ 1.1 × + 1 MiB per disk)" ||
			fail "cycle $c uploaded $sent bytes for $changed changed"
		assert_match "$(ctl log rep rep01 -n 50)" "landed in the top of the target's chain" "cycle $c went into the top of the chain"
	fi
	[ $c = 4 ] && break
	changed=0
	for d in 0 1 2; do
		b=$(curl -sf -XPOST "$S_CTL/write" -d "{\"vm\":\"rep01\",\"disk\":$d,\"percent\":3,\"seed\":$((80 + 10 * c + d))}" | jq .bytes)
		changed=$((changed + b))
	done
	curl -sf -XPOST "$D_CTL/stats/reset" >/dev/null
	[ $c = 3 ] && fault "$S_CTL" '{"cbt_reset":{"vm":"rep01","disk":1}}'
	assert_match "$(ctl run rep rep01)" "rep01: complete -> queued" "vmferryctl run starts cycle $((c + 1))"
done

points=$(ctl --json show rep rep01 | jq -c '.details')
assert_eq "$(jq -r '[.points[].point] | join(",")' <<<"$points")" "3,4" "keep_history 2: the two newest restore points remain"
assert_eq "$(curl -sf "$D_CTL/snapshots?vm=rep01" | jq -r '[.[].name] | join(",")')" \
	"vmferry-replication-rep-rp3,vmferry-replication-rep-rp4" "the target VM holds exactly those two snapshots"
assert_eq "$(jq -r '.cycles' <<<"$points")" 4 "show counts four cycles"
# 创建新虚机 is the first cycle's state only (seed 001).
assert_eq "$(ctl log rep rep01 -n 1000 | grep -c -- '-> creating_vm ')" 1 "only the first cycle passes through creating_vm"
assert_eq "$(ctl log rep rep01 -n 1000 | grep -c -- 'queued -> fetching_config (event next_cycle)')" 3 \
	"the three later cycles go from queued to fetching_config"
assert_eq "$(snap_count rep01)" 0 "no engine snapshot is left on the source"
assert_match "$(ctl log rep rep01 -n 300)" "restore point 2 removed \\(keep_history 2\\)" "the oldest points were removed, logged"
assert_eq "$(vm_power "$D_CTL" rep01)" poweredOff "the target VM stays powered off"
stop_daemon

# A VMFS6 target without hot-add (SPEC §9): restore points live in the
# target's chain, and there neither a vmfsSparse delta (its deltas are
# seSparse) nor a whole upload can make one.  The datastore's type says so
# at the pre-check, so the rule fails at its first pass, before its source
# is snapshotted or read, with a reason naming the datastore.
cat >"$T/target6.json" <<'JSON'
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":[{"name":"ds0","type":"VMFS","version":"6"}]}],"vms":[]}
JSON
start_peer D6 "$T/target6.json"
MIG_NODE_EXTRA="hotadd: false" mig_config
{
	echo ---
	mig_platform dst6 "$D6_URL" "$D6_THUMB" vc
} >>"$CONF/10-platforms.yaml"
MIG_DST=dst6 rep_rule rep6 rep06 "fast_transfer: true, auto_sync: false" 2
stats_reset
start_daemon "$CONF"
wait_job rep6 rep06 failed 120
assert_match "$(job_field rep6 rep06 error)" \
	"disk 0 cannot be written: no hot-add \\(hot-add is off for node local \\(hotadd: false\\)\\); datastore ds0 is VMFS 6: its snapshot deltas are seSparse, which nobody outside VMware writes; restore points live in the target's chain" \
	"a replication onto a VMFS6 target without hot-add is refused, naming the datastore and why"
assert_eq "$(flat_bytes rep06)" 0 "... before any byte of the source's disks was read"
assert_nomatch "$(ctl log rep6 rep06 -n 300)" "sync pass 1:" "... at its first pass, before any copy"
assert_eq "$(method_count "$S_CTL" CreateSnapshot_Task)" 0 "... and its source was never snapshotted"
stop_daemon
echo "1..$NTEST"
