#!/usr/bin/env bash
# Replication with auto_sync on an hourly schedule, on an injected clock
# (VMFERRY_CLOCK_FILE): the first cycle runs when the rule appears, then
# the job waits in 空闲 until its next time, when a cycle runs and makes
# the next restore point; not before; a daemon down over several due
# times runs one cycle at start, not one per missed time.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

export TZ=UTC
CLOCK=$T/clock
export VMFERRY_CLOCK_FILE=$CLOCK
MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"hr01","host":"H0","power":"on","disks":[{"capacity":$((4 * MiB)),"seed":121,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
set_clock "2026-12-02 10:30:00"
cat >"$CONF/20-rep.yaml" <<YAML
kind: replication
name: hourly
source: { platform: src, vms: [hr01] }
node: local
target: { platform: dst, datacenter: DC0, host: H0, datastore: ds0 }
schedule: { type: hourly, interval: 1h, start: "00:00" }
options: { fast_transfer: true, auto_sync: true }
keep_history: 5
YAML
start_daemon "$CONF"
points() { ctl --json show hourly hr01 | jq -r '[.details.points[].point] | join(",")'; }
tick() { set_clock "$1"; ctl reload >/dev/null; }

wait_job hourly hr01 idle 120
assert_eq "$(points)" 1 "the first cycle runs when the rule appears and rests in 空闲 with point 1"
assert_eq "$(dst_sha hr01 0)" "$(src_sha hr01 0)" "the first cycle copied the disk"

gwrite '{"vm":"hr01","disk":0,"percent":5,"seed":7}' >/dev/null
tick "2026-12-02 10:59:58"
sleep 1
assert_eq "$(job_state hourly hr01)" idle "before 11:00 no cycle runs"
assert_eq "$(points)" 1 "... and no point is made"

tick "2026-12-02 11:00:03"
wait_until 20 sh -c "'$BIN/vmferryctl' -s '$SOCK' log hourly hr01 -n 100 | grep -q 'scheduled run of 2026-12-02 11:00'" ||
	fail "the 11:00 cycle did not start: $(ctl log hourly hr01 -n 10)"
wait_until 60 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json show hourly hr01 | jq -r '[.details.points[].point] | join(\",\")')\" = 1,2 ]" ||
	fail "the 11:00 cycle made no point 2: $(points)"
wait_job hourly hr01 idle 60
ok "at 11:00 a cycle ran and made point 2, then 空闲 again"
assert_eq "$(dst_sha hr01 0)" "$(src_sha hr01 0)" "the scheduled cycle carried the change"

# Down from 11:00 to 15:30: 12:00 … 15:00 missed, one cycle at start.
stop_daemon
gwrite '{"vm":"hr01","disk":0,"percent":5,"seed":8}' >/dev/null
set_clock "2026-12-02 15:30:00"
start_daemon "$CONF"
wait_until 60 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json show hourly hr01 | jq -r '[.details.points[].point] | join(\",\")')\" = 1,2,3 ]" ||
	fail "no cycle for the missed times: $(points)"
wait_job hourly hr01 idle 60
sleep 1
assert_eq "$(points)" "1,2,3" "a daemon down over four due times runs one cycle at start, not four"
assert_match "$(ctl log hourly hr01 -n 100)" "missed while the daemon was down" "that cycle is marked as made up"
assert_eq "$(dst_sha hr01 0)" "$(src_sha hr01 0)" "the made-up cycle carried the change"
stop_daemon
echo "1..$NTEST"
