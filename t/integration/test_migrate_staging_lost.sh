#!/usr/bin/env bash
# A staging image that is gone (temp_dir wiped, e.g. a tmpfs after a
# reboot) is never trusted: the job copies that disk in full again instead
# of resuming at a checkpoint or a changeId whose bytes no longer exist.
# Two moments: after 迁移就绪 (the next pass would otherwise send only the
# changes into an empty image) and in the middle of the first copy (it
# would otherwise resume at the checkpoint).  Both targets end equal to
# their sources.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"gone01","host":"H0","power":"on","disks":[{"capacity":4194816,"seed":21,"allocated":0.6},{"capacity":2097664,"seed":22,"allocated":0.5}]},
        {"name":"gone02","host":"H0","power":"on","disks":[{"capacity":25165824,"seed":23,"allocated":1.0}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
mig_rule lost gone01 "fast_transfer: true, cutover: poweroff"
start_daemon "$CONF"
wait_job lost gone01 ready 120
ok "gone01 reached ready"
imgs=$(find "$STATE/tmp" -name 'disk*.img' | wc -l)
assert_eq "$imgs" 2 "its two staging images are in temp_dir"

# temp_dir wiped while the job waits; the guest writes a little.
rm -rf "$STATE/tmp"
gwrite '{"vm":"gone01","disk":0,"offset":4096,"length":8192,"seed":31}' >/dev/null
ctl migrate lost gone01 >/dev/null
wait_job lost gone01 complete 120
ok "the migration completes after temp_dir was wiped"
log=$(ctl log lost gone01 -n 300)
assert_match "$log" "disk 0: its staging image .* is gone; copying it in full" "the log says disk 0 is copied in full again"
assert_match "$log" "disk 1: its staging image .* is gone; copying it in full" "the log says disk 1 is copied in full again"
for d in 0 1; do
	assert_eq "$(dst_sha gone01 $d)" "$(src_sha gone01 $d)" "gone01 disk $d: the target holds the source's bytes"
done

# In the middle of the first copy: slow, so temp_dir can go under it.
mig_rule lost2 gone02 "fast_transfer: true, cutover: poweroff" '[{ days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 4MiB/s }]'
wait_until 60 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs lost2 | jq '.jobs[0].bytes_done // 0')\" -gt 10000000 ]" ||
	fail "gone02's copy did not get past 10 MB"
# A checkpoint is recorded every 2 s: wait for one, then stop the daemon and wipe.
sleep 2.5
crash_daemon
rm -rf "$STATE/tmp"
start_daemon "$CONF"
wait_job lost2 gone02 ready 120
log=$(ctl log lost2 gone02 -n 300)
assert_match "$log" "disk 0: its staging image .* is gone; copying it in full" "the resumed copy knows its image is gone"
assert_nomatch "$log" "disk 0: resuming at offset" "it does not resume at the recorded checkpoint"
ctl migrate lost2 gone02 >/dev/null
wait_job lost2 gone02 complete 120
assert_eq "$(dst_sha gone02 0)" "$(src_sha gone02 0)" "gone02: the target holds the source's bytes"

stop_daemon
echo "1..$NTEST"
