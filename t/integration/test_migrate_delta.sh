#!/usr/bin/env bash
# Over HTTPS every pass lands in the target VM's disks as vmfsSparse
# snapshot deltas, consolidated: the full copy sends the allocated bytes
# (the target stays thin), each catch-up and the cutover's final pass
# only the changes, and nothing is uploaded whole.  qemu-img, an
# independent VMDK reader, opens the target's files in the peer's
# datastore directory and finds them equal to the source after the full
# copy and after cutover.  A kill -9 while the target is snapshotted and
# while the deltas are consolidated still ends right, and a VMFS6 target
# (seSparse deltas, known from the datastore's type before the first pass)
# takes whole uploads from the start, saying so.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
command -v qemu-img >/dev/null || skip_test "qemu-img (qemu-utils) is not installed"

MiB=1048576
C0=$((32 * MiB))
C1=$((8 * MiB + 4096))
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"thin01","host":"H0","power":"on","disks":[{"capacity":$C0,"seed":41,"allocated":0.1},{"capacity":$C1,"seed":42,"allocated":0.5}]},
        {"name":"kill01","host":"H0","power":"on","disks":[{"capacity":$((4 * MiB)),"seed":43,"allocated":0.6},{"capacity":$((2 * MiB)),"seed":44,"allocated":0.5}]},
        {"name":"stop01","host":"H0","power":"on","disks":[{"capacity":$((24 * MiB)),"seed":45,"allocated":1.0}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
start_daemon "$CONF"

# The job's log as the daemon wrote it (the daemon is down when asked).
ctl_log_file() { grep "job migration/kill/$1:" "$T/daemon.log"; }
put_bytes() { curl -sf "$1/stats" | jq -r '.requests.folder_put_bytes'; }

curl -sf -XPOST "$D_CTL/stats/reset" >/dev/null
mig_rule thin thin01 "fast_transfer: true, cutover: poweroff"
wait_job thin thin01 ready 120
ok "thin01: the full copy reaches ready"
alloc=$(alloc_bytes thin01)
put=$(put_bytes "$D_CTL")
[ "$put" -le $((alloc + alloc / 10 + MiB)) ] && ok "the full copy uploaded $put bytes for $alloc allocated (≤ 1.1 × + 1 MiB)" ||
	fail "the full copy uploaded $put bytes for $alloc allocated"
for d in 0 1; do
	qcompare thin01 $d && ok "after the full copy, qemu-img finds target disk $d equal to the source, its chain clean" ||
		fail "qemu-img: target disk $d differs from the source after the full copy"
done
flat0=$D_DIR/ds0/$(curl -sf "$D_CTL/vms" | jq -r '.[] | select(.name == "thin01") | .disks[0].flat' | sed 's/^\[ds0\] //')
used=$(du -B1 "$flat0" | cut -f1)
[ "$used" -le $((alloc * 11 / 10 + MiB)) ] && ok "target disk 0 stays thin: $used bytes on disk for a 32 MiB disk 10 % allocated (both disks: $alloc)" ||
	fail "target disk 0 is not thin: $used bytes on disk"
log=$(ctl log thin thin01 -n 400)
assert_match "$log" "the pass landed in the target: [0-9]+ delta bytes put, consolidated" "the log says the pass landed as deltas"
assert_match "$(ctl show thin thin01)" "target_writes +snapshot deltas" "vmferryctl show says the target is written by snapshot deltas"

# 1 % changes, then the cutover: only deltas, nothing whole.
gwrite '{"vm":"thin01","disk":0,"offset":1048576,"length":327680,"seed":51}' >/dev/null
gwrite '{"vm":"thin01","disk":1,"offset":4096,"length":4096,"seed":52}' >/dev/null
curl -sf -XPOST "$D_CTL/stats/reset" >/dev/null
ctl migrate thin thin01 >/dev/null
wait_job thin thin01 complete 120
ok "thin01: the migration completes"
put=$(put_bytes "$D_CTL")
[ "$put" -le $((2 * MiB)) ] && ok "catch-up and cutover uploaded $put bytes for 328 KiB changed (no whole disk)" ||
	fail "catch-up and cutover uploaded $put bytes for 328 KiB changed"
log=$(ctl log thin thin01 -n 400)
assert_nomatch "$log" "uploading disk [0-9] to" "no disk is uploaded whole"
for d in 0 1; do
	assert_eq "$(dst_sha thin01 $d)" "$(src_sha thin01 $d)" "thin01 disk $d: the peer's hashes agree"
	qcompare thin01 $d && ok "after cutover, qemu-img finds target disk $d equal to the source, its chain clean" ||
		fail "qemu-img: target disk $d differs after cutover"
done
assert_eq "$(curl -sf "$D_CTL/snapshots?vm=thin01" | jq length)" 0 "no snapshot is left on the target"

# kill -9 while the target's snapshot is being made, then while it is consolidated.
fault "$D_CTL" '{"delay":{"method":"CreateSnapshot_Task","ms":2500}}'
mig_rule kill kill01 "fast_transfer: true, cutover: poweroff"
wait_until 60 sh -c "'$BIN/vmferryctl' -s '$SOCK' log kill kill01 -n 200 | grep -q 'bytes in [0-9]* areas to copy'" || fail "kill01 did not start its pass"
sleep 1.5
crash_daemon
[ "$(curl -sf "$D_CTL/fault" | jq '.injected.delay')" -ge 1 ] && ok "the kill landed while the target's CreateSnapshot was held" ||
	fail "no CreateSnapshot was held when vmferryd was killed"
fault "$D_CTL" '{"delay":{"method":"CreateSnapshot_Task","ms":0}}'
fault "$D_CTL" '{"delay":{"method":"RemoveSnapshot_Task","ms":2500}}'
start_daemon "$CONF"
wait_until 60 sh -c "'$BIN/vmferryctl' -s '$SOCK' log kill kill01 -n 300 | grep -q 'uploading the delta of disk 1'" || fail "kill01's deltas were not put after the restart"
sleep 1.5
crash_daemon
[ "$(curl -sf "$D_CTL/fault" | jq '.injected.delay')" -ge 2 ] && ok "the second kill landed while the consolidation was held" ||
	fail "no RemoveSnapshot was held when vmferryd was killed"
assert_match "$(ctl_log_file kill01)" "the target snapshot asked for [0-9]+ s ago is not there yet: waiting for it" \
	"after the first kill the daemon waited for the snapshot it had asked for instead of asking twice"
fault "$D_CTL" '{"delay":{"method":"RemoveSnapshot_Task","ms":0}}'
start_daemon "$CONF"
wait_job kill kill01 ready 120
ok "kill01 reaches ready after kills while the target was snapshotted and consolidated"
assert_eq "$(curl -sf "$D_CTL/snapshots?vm=kill01" | jq length)" 0 "no snapshot is left on the target"
assert_eq "$(snap_count kill01)" 0 "no snapshot is left on the source"
assert_eq "$(vm_count "$D_CTL" kill01)" 1 "one target VM"
for d in 0 1; do
	qcompare kill01 $d && ok "after the kills, qemu-img finds target disk $d equal to the source" ||
		fail "qemu-img: kill01 disk $d differs after the kills"
done

# A first pass stopped half-way: its bytes never landed, so the next pass
# must carry them (below the point too), not only what changed since.
mig_rule stop stop01 "fast_transfer: true, cutover: poweroff" '[{ days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 4MiB/s }]'
wait_until 60 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs stop | jq '.jobs[0].bytes_done // 0')\" -gt 10000000 ]" ||
	fail "stop01's copy did not get past 10 MB"
sleep 2.5
ctl stop stop stop01 >/dev/null
wait_job stop stop01 stopped 60
ctl start stop stop01 >/dev/null
wait_job stop stop01 ready 120
ok "stop01: stopped in the middle of its first pass, started again, ready"
qcompare stop01 0 && ok "after the stop and start, qemu-img finds the target equal to the source" ||
	fail "qemu-img: stop01's target differs from the source after a stop in the first pass"
stop_daemon

# A VMFS6 target: seSparse deltas cannot be written; whole uploads instead,
# known from the datastore's type at the pre-check, so the first pass is
# already decided as the whole upload: no delta is tried after the copy.
cat >"$T/target6.json" <<'JSON'
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":[{"name":"ds0","type":"VMFS","version":"6"}]}],"vms":[]}
JSON
start_peer D6 "$T/target6.json"
cat >"$CONF/11-vmfs6.yaml" <<YAML
$(mig_platform dst6 "$D6_URL" "$D6_THUMB" vc)
YAML
MIG_DST=dst6 mig_rule six thin01 "fast_transfer: true, cutover: none"
rm -f "$CONF"/20-thin.yaml "$CONF"/20-kill.yaml "$CONF"/20-stop.yaml
start_daemon "$CONF"
wait_job six thin01 ready 120
log=$(ctl log six thin01 -n 300)
for d in 0 1; do
	assert_match "$(grep -m1 "disk $d is written through" <<<"$log")" \
		"disk $d is written through whole: no hot-add \\(.*\\); datastore ds0 is VMFS 6: its snapshot deltas are seSparse, which nobody outside VMware writes; uploaded whole at cutover: the downtime grows with the disk's size" \
		"a VMFS6 target: disk $d's first decision is the whole upload, naming the datastore, why and what the downtime grows with"
done
assert_nomatch "$log" "written through delta|snapshot deltas cannot be written, so" "... no delta is tried, nothing falls back after the copy"
assert_eq "$(method_count "$D6_CTL" CreateSnapshot_Task)" 0 "... and the target VM was never snapshotted for a landing"
assert_match "$(ctl inventory dst6)" "datastores: ds0 \\(VMFS 6, [^)]* free of " "vmferryctl inventory shows the datastore's type and VMFS version"
assert_eq "$(ctl --json inventory dst6 | jq -r '.datastores[0] | "\(.type) \(.vmfs_version)"')" "VMFS 6" "... and so does the socket's inventory"
assert_match "$(ctl show six thin01)" "target_writes +whole uploads at cutover: the downtime grows with the disks' size" \
	"vmferryctl show says the disks go whole and what the downtime grows with"
assert_match "$(ctl show six thin01)" "target_writes_why .*seSparse" "... and why (seSparse)"
ctl migrate six thin01 >/dev/null
wait_job six thin01 complete 120
assert_match "$(ctl log six thin01 -n 300)" "uploading disk 0 to" "the VMFS6 target gets its disks uploaded whole"
for d in 0 1; do
	assert_eq "$(sha "$D6_CTL" thin01 $d)" "$(src_sha thin01 $d)" "VMFS6 target disk $d holds the source's bytes"
done
stop_daemon
echo "1..$NTEST"
