#!/usr/bin/env bash
# Migration end to end: full copy to 迁移就绪 (ready), `vmferryctl migrate`,
# catch-up, cutover, 完成 (complete).  Disks of odd sizes (not multiples of
# transfer_buffer), partly allocated; with fast_transfer on and off, over
# HTTPS and through mounted datastores (lan_free, "direct"), and with the
# three cutover modes (shutdown, poweroff, none).  Each ends with every
# target disk equal to the source's, the right power states, no snapshot
# left on the source, exactly one target VM, downtime logged and the
# statistics counting one success and the bytes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

D1=5242881   # 5 MiB + 1
D2=3149825   # 3 MiB + 4097
D3=7339520   # 7 MiB - 512
disks3() { # seed base
	echo "[{\"capacity\":$D1,\"seed\":$(($1 + 1)),\"allocated\":0.3},
	         {\"capacity\":$D2,\"seed\":$(($1 + 2)),\"allocated\":0.6},
	         {\"capacity\":$D3,\"seed\":$(($1 + 3)),\"allocated\":1.0}]"
}
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"web01","host":"H0","power":"on","cpus":2,"memory_mb":1024,"nics":["VM Network"],"disks":$(disks3 10)},
        {"name":"web02","host":"H0","power":"on","disks":$(disks3 20)},
        {"name":"web03","host":"H0","power":"on","cpus":4,"memory_mb":2048,"disks":$(disks3 30)},
        {"name":"web04","host":"H0","power":"on","disks":[{"capacity":$D2,"seed":41,"allocated":0.5},{"capacity":$D1,"seed":42,"allocated":0.2}]},
        {"name":"web05","host":"H0","power":"on","disks":[{"capacity":$D3,"seed":51,"allocated":0.7}]}]}
JSON
mig_start_peers "$T/fixture.json"
MIG_MOUNTS=1 mig_config
mig_rule https web01 "fast_transfer: true"
mig_rule full web02 "fast_transfer: false"
mig_rule direct web03 "fast_transfer: true, lan_free: true"
mig_rule keep web04 "fast_transfer: true, cutover: none"
mig_rule hard web05 "fast_transfer: true, cutover: poweroff, power_on_target: false"

alloc1=$(alloc_bytes web01)

start_daemon "$CONF"

# The full copies.
timeout 180 "$BIN/vmferryctl" -s "$SOCK" watch https --until ready >"$T/watch.out" 2>&1 ||
	fail "vmferryctl watch --until ready did not end with every https job ready: $(tail -3 "$T/watch.out")"
ok "vmferryctl watch --until ready returns once the full copy is done"
for r in "https web01" "full web02" "direct web03" "keep web04" "hard web05"; do
	set -- $r
	wait_job "$1" "$2" ready 180
done
ok "every rule reaches ready (迁移就绪) after its full copy"
j=$(job_json https web01)
assert_eq "$(jq -r '"\(.label_zh) \(.progress)"' <<<"$j")" "迁移就绪 100" "ready shows 迁移就绪 at 100 %"
assert_eq "$(snap_count web01)" 0 "no snapshot is kept on the source while ready"
assert_eq "$(vm_count "$D_CTL" web01)" 1 "the target VM exists while ready"
assert_eq "$(vm_power "$S_CTL" web01)" poweredOn "the source keeps running while ready"
tvm=$(peer_vm "$D_CTL" web01)
assert_eq "$(jq -c '.[0] | [.cpus, .memory_mb, [.disks[].capacity]]' <<<"$tvm")" "[2,1024,[$D1,$D2,$D3]]" \
	"the target VM has the source's CPUs, memory and equally sized disks in order"
assert_match "$(ctl log https web01)" "full copy finished" "the log says the full copy finished"

# Cut over.
for r in "https web01" "full web02" "direct web03" "keep web04" "hard web05"; do
	set -- $r
	ctl migrate "$1" "$2" >/dev/null || fail "vmferryctl migrate $1 $2 was refused"
done
ok "vmferryctl migrate is accepted in ready"
for r in "https web01" "full web02" "direct web03" "keep web04" "hard web05"; do
	set -- $r
	wait_job "$1" "$2" complete 180
done
ok "every migration completes (完成)"

check_complete https web01 3 "https, fast_transfer"
check_complete full web02 3 "https, fast_transfer off"
check_complete direct web03 3 "direct (lan_free)"
check_complete keep web04 2 "cutover none"
check_complete hard web05 1 "cutover poweroff"

# Power states after cutover.
assert_eq "$(vm_power "$S_CTL" web01)" poweredOff "cutover shutdown: the source is powered off"
assert_eq "$(vm_power "$D_CTL" web01)" poweredOn "the target VM is powered on"
assert_eq "$(vm_power "$S_CTL" web03)" poweredOff "direct: the source is powered off"
assert_eq "$(vm_power "$D_CTL" web03)" poweredOn "direct: the target VM is powered on"
assert_eq "$(vm_power "$S_CTL" web04)" poweredOn "cutover none: the source keeps running"
assert_eq "$(vm_power "$D_CTL" web04)" poweredOn "cutover none: the target VM is powered on"
assert_eq "$(vm_power "$S_CTL" web05)" poweredOff "cutover poweroff: the source is powered off"
assert_eq "$(vm_power "$D_CTL" web05)" poweredOff "power_on_target false: the target stays off"
assert_eq "$(curl -sf "$D_CTL/vms" | jq -r '[.[].name] | join(",")')" "web01,web02,web03,web04,web05" \
	"the target holds exactly the migrated VMs"
tvm=$(peer_vm "$D_CTL" web03)
assert_eq "$(jq -c '.[0] | [.cpus, .memory_mb, [.disks[].capacity]]' <<<"$tvm")" "[4,2048,[$D1,$D2,$D3]]" \
	"direct: the target VM has the source's hardware"

# The log and statistics.
log1=$(ctl log https web01)
assert_match "$log1" "downtime [0-9]+\.[0-9] s" "the log reports the downtime"
assert_match "$log1" "shutting down the source" "the log says the source was shut down"
assert_match "$(ctl log keep web04)" "cutover none: the source keeps running" "cutover none is logged"
assert_match "$(ctl log hard web05)" "powering off the source" "cutover poweroff is logged"
assert_nomatch "$(ctl log direct web03)" "uploading disk" "direct writes in place: nothing is uploaded"
assert_match "$log1" "uploading the delta of disk 2" "https: each pass lands in the target as snapshot deltas"
assert_nomatch "$log1" "uploading disk [0-9] to" "https: no disk is uploaded whole at cutover"

st=$(ctl --json stats https web01)
assert_eq "$(jq -r '.jobs[0] | "\(.successes) \(.failures)"' <<<"$st")" "1 0" "stats: one success, no failure"
bytes1=$(jq -r '.jobs[0].bytes' <<<"$st")
served1=$(flat_bytes web01)
assert_eq "$bytes1" "$served1" "stats bytes equal the bytes the source served from its flat files"
[ "$bytes1" -lt $((D1 + D2 + D3)) ] && ok "fast_transfer reads only the allocated areas ($bytes1 of $((D1 + D2 + D3)) bytes)" ||
	fail "fast_transfer read $bytes1 bytes, the disks hold $((D1 + D2 + D3))"
assert_eq "$bytes1" "$alloc1" "the bytes moved are the allocated bytes of the source's flat files"
bytes2=$(ctl --json stats full web02 | jq -r '.jobs[0].bytes')
[ "$bytes2" -ge $((D1 + D2 + D3)) ] && ok "fast_transfer off copies whole disks ($bytes2 bytes)" ||
	fail "fast_transfer off moved only $bytes2 bytes"
assert_eq "$(ctl --json stats direct web03 | jq -r '.jobs[0].successes')" 1 "direct: stats count one success"
assert_eq "$(flat_bytes web03)" 0 "direct: nothing is read over HTTPS"
rs=$(ctl --json stats https | jq -r '.rules[0] | "\(.successes) \(.bytes)"')
assert_eq "$rs" "1 $bytes1" "the rule's totals"

# A finished migration is final.
out=$(ctl migrate https web01 2>&1) && fail "migrate on a complete job must be refused"
assert_match "$out" "complete" "migrate on a complete job is refused, naming the state"

# After a restart nothing runs again: across it, neither peer answers a
# SOAP call or a datastore request (its counters stay as they were), in
# the 2 s after the restored jobs were resumed.
peer_work() {
	curl -sf "$1/stats" | jq -c '.requests | {sdk: (.sdk // 0), folder_get: (.folder_get // 0), folder_put: (.folder_put // 0), bytes: ((.folder_bytes // 0) + (.folder_put_bytes // 0))}'
}
work="$(peer_work "$S_CTL") $(peer_work "$D_CTL")"
stop_daemon
start_daemon "$CONF"
grep -q "starting: 5 jobs restored" "$T/daemon.log" || fail "the restarted daemon did not restore the 5 jobs"
sleep 2
assert_eq "$(peer_work "$S_CTL") $(peer_work "$D_CTL")" "$work" \
	"after a restart no SOAP call is made and no byte is read or written on either peer"
assert_eq "$(ctl --json jobs | jq -r '[.jobs[].state] | unique | join(",")')" complete "after a restart every job stays complete"
assert_eq "$(curl -sf "$D_CTL/vms" | jq 'length')" 5 "a restart creates no further target VM"
