#!/usr/bin/env bash
# A restore writes each disk through the disk's transport (SPEC §6, §10;
# issue #16), as a migration does: with lan_free and the datastore mounted
# on the node, in place (nothing uploaded); onto a datastore that poses
# as VMFS6 (seSparse deltas) through hot-add via the appliance VM; each
# restored disk equals its point, and nothing stays attached.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"vm01","host":"H0","power":"on","disks":[{"capacity":$((9 * MiB + 512)),"seed":41,"allocated":0.5},{"capacity":$((3 * MiB + 4096)),"seed":42,"allocated":0.4}]},
        {"name":"vh01","host":"H0","power":"on","disks":[{"capacity":$((7 * MiB + 1024)),"seed":43,"allocated":0.6}]}]}
JSON
export MIG_MOUNTS=1
mig_start_hotadd_peers "$T/fixture.json"
bak_rule viam vm01 "fast_transfer: true, lan_free: true"
bak_rule viah vh01 "fast_transfer: true"
start_daemon "$CONF"
wait_job viam vm01 idle 30
wait_job viah vh01 idle 30
ctl run viam vm01 --mode full >/dev/null
ctl run viah vh01 --mode full >/dev/null
wait_job viam vm01 complete 120
wait_job viah vh01 complete 120
want_m=$(src_hashes vm01 2)
want_h=$(src_hashes vh01 1)
ok "both VMs backed up"

# The original through the mount: in place, nothing uploaded.
curl -sf -XPOST "$S_CTL/power" -d '{"vm":"vm01","state":"off"}' >/dev/null || fail "the peer cannot power vm01 off"
for d in 0 1; do gwrite "{\"vm\":\"vm01\",\"disk\":$d,\"percent\":10,\"seed\":$((50 + d))}" >/dev/null; done
stats_reset
ctl restore viam vm01 >/dev/null
wait_job viam vm01 idle 120
assert_eq "$(src_hashes vm01 2)" "$want_m" "through the mount: the original VM equals its point"
assert_match "$(ctl log viam vm01 -n 60)" "disk 0 is written through direct" "lan_free: the restore writes in place through the mount"
assert_eq "$(curl -sf "$S_CTL/stats" | jq -r '.requests.folder_put_bytes // 0')" 0 "through the mount nothing is uploaded"
assert_eq "$(snap_count vm01)" 0 "no snapshot left on vm01"

# A new VM on a VMFS6-posing datastore: through hot-add.
ctl restore viah vh01 --target new --name vh01-new --platform dst --datacenter DC0 --host H0 --datastore ds0 >/dev/null
wait_job viah vh01 idle 120
assert_match "$(ctl log viah vh01 -n 60)" "disk 0 is written through hotadd" "onto a VMFS6 datastore the restore writes through hot-add"
assert_eq "$(dst_sha vh01-new 0)" "$(cut -d' ' -f1 <<<"$want_h")" "through hot-add: the new VM equals the point"
assert_eq "$(curl -sf "$D_CTL/hotadd" | jq '[.attached[]?] | length')" 0 "nothing is left attached to the appliance VM"
stop_daemon
echo "1..$NTEST"
