#!/usr/bin/env bash
# Backup schedules (docs/CONFIG.md §6.3) on an injected clock
# (VMFERRY_CLOCK_FILE): periodic entries each with its mode drive the
# runs through the calendar; each run's point has its entry's mode (an
# incremental with no point before it is a full, logged); a daemon down
# over several due times runs one backup at start, not one per missed
# time.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"

export TZ=UTC
CLOCK=$T/clock
export VMFERRY_CLOCK_FILE=$CLOCK
MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"bs01","host":"H0","power":"on","disks":[{"capacity":$((6 * MiB + 512)),"seed":131,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
set_clock "2026-12-02 10:30:00"
cat >"$CONF/20-bak.yaml" <<YAML
kind: backup
name: daily
source: { platform: src, vms: [bs01] }
node: local
options: { fast_transfer: true }
retention: 10
schedule:
  - { type: daily, mode: full, times: ["01:00"] }
  - { type: daily, mode: incremental, times: ["13:00"] }
  - { type: daily, mode: differential, times: ["19:00"] }
YAML
start_daemon "$CONF"
modes() { ctl --json show daily bs01 | jq -r '[.details.points[] | "\(.point):\(.mode):\(.parent)"] | join(",")'; }
tick() { set_clock "$1"; ctl reload >/dev/null; }
# run_at TIME WANT: the clock moves to TIME, the scheduled backup runs and
# the job's points are then WANT.
run_at() {
	tick "$1"
	wait_until 30 sh -c "'$BIN/vmferryctl' -s '$SOCK' log daily bs01 -n 100 | grep -q 'scheduled run of ${1%:*}'" ||
		fail "the run of $1 did not start: $(ctl log daily bs01 -n 10)"
	wait_until 60 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json show daily bs01 | jq -r '[.details.points[] | \"\\(.point):\\(.mode):\\(.parent)\"] | join(\",\")')\" = '$2' ]" ||
		fail "after the run of $1 the points are $(modes), not $2"
	wait_job daily bs01 idle 60
	ok "the run of $1 made the point its entry says ($2)"
}

wait_job daily bs01 idle 30
assert_eq "$(modes)" "" "a new rule waits for its first due time"
tick "2026-12-02 12:59:58"
sleep 1
assert_eq "$(job_state daily bs01)" idle "before 13:00 nothing runs"

run_at "2026-12-02 13:00:03" "1:full:0"
assert_match "$(ctl log daily bs01 -n 100)" "no earlier point to read against yet: this point is a full" \
	"the incremental entry's first run is a full, logged"
bak_point_equal daily bs01 1 1 "13:00"
gwrite '{"vm":"bs01","disk":0,"percent":5,"seed":7}' >/dev/null
run_at "2026-12-02 19:00:03" "1:full:0,2:differential:1"
bak_point_equal daily bs01 2 1 "19:00"
gwrite '{"vm":"bs01","disk":0,"percent":5,"seed":8}' >/dev/null
run_at "2026-12-03 01:00:03" "1:full:0,2:differential:1,3:full:0"
gwrite '{"vm":"bs01","disk":0,"percent":5,"seed":9}' >/dev/null
run_at "2026-12-03 13:00:03" "1:full:0,2:differential:1,3:full:0,4:incremental:3"
bak_point_equal daily bs01 4 1 "the next day's 13:00"

# Down from 13:00 to the day after at 14:00: 19:00, 01:00 and 13:00
# missed; one backup at start.
stop_daemon
gwrite '{"vm":"bs01","disk":0,"percent":5,"seed":10}' >/dev/null
set_clock "2026-12-04 14:00:00"
start_daemon "$CONF"
wait_until 60 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json show daily bs01 | jq -r '.details.points | length')\" = 5 ]" ||
	fail "no backup ran at start after the missed times: $(modes)"
wait_job daily bs01 idle 60
sleep 2
assert_eq "$(ctl --json show daily bs01 | jq -r '.details.points | length')" 5 \
	"three missed times give one backup at start, not three"
bak_point_equal daily bs01 5 1 "the backup at start"
assert_eq "$(ctl --json stats daily bs01 | jq -r '.jobs[0] | "\(.successes) \(.failures)"')" "5 0" "five successes, no failure"
stop_daemon
echo "1..$NTEST"
