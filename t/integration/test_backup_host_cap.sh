#!/usr/bin/env bash
# Buffers in flight per host never exceed host_buffer_cap (SPEC §4), for
# backups too: two backups on one ESXi host, each with its share of the
# cap (4 MiB / (2 tasks x 1 MiB) = 2 reads of 1 MiB).  A backup keeps a
# repository chunk's bytes (4 MiB) until the chunk is complete and
# sealed; that is the appliance's memory, and the host is never asked for
# more than the share meanwhile.  The source peer holds every read 40 ms
# and counts the bytes of the reads it owes at once.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"hc01","host":"H0","power":"on","disks":[{"capacity":$((22 * MiB + 4096)),"seed":31,"allocated":1.0}]},
        {"name":"hc02","host":"H0","power":"on","disks":[{"capacity":$((18 * MiB)),"seed":32,"allocated":0.7}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config "max_tasks: 2
max_tasks_per_host: 2
transfer_buffer: 1MiB
host_buffer_cap: 4MiB"
bak_rule cap "hc01 hc02" "fast_transfer: true"
start_daemon "$CONF"
wait_job cap hc01 idle 30
wait_job cap hc02 idle 30

fault "$S_CTL" '{"delay":{"method":"GET /folder","ms":40}}'
stats_reset
ctl run cap >/dev/null
wait_job cap hc01 complete 120
wait_job cap hc02 complete 120
ok "both backups complete"
held=$(curl -sf "$S_CTL/fault" | jq .injected.delay)
[ "$held" -gt 10 ] && ok "the source peer held $held reads 40 ms each" || fail "the delay held $held reads"
owed=$(curl -sf "$S_CTL/stats" | jq .requests.folder_get_owed_max)
[ "$owed" -le $((4 * MiB)) ] && ok "the host owed at most $owed bytes at once (host_buffer_cap 4 MiB)" ||
	fail "the host owed $owed bytes at once, above host_buffer_cap (4 MiB)"
# Both jobs read at once: one job's share is 2 MiB, so more than that
# owed at once means the other job's reads were in flight too.  (hc02's
# areas are small, so how far above 2 MiB the peak goes is timing.)
[ "$owed" -gt $((2 * MiB)) ] && ok "the two backups read side by side ($owed bytes owed at the peak, one share is 2 MiB)" ||
	fail "at most $owed bytes owed, one job's share: the backups did not read side by side"
fault "$S_CTL" '{"clear":true}'
bak_point_equal cap hc01 1 1 "within the host's share"
bak_point_equal cap hc02 1 1 "within the host's share"
stop_daemon
echo "1..$NTEST"
