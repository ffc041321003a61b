#!/usr/bin/env bash
# Scheduled runs through the calendar, on an injected clock
# (VMFERRY_CLOCK_FILE): an hourly backup rule runs when its time comes and
# not before; a run that falls due while one runs is not doubled; a daemon
# that was down over five due times runs once at start, marked as missed;
# 立即执行 is not the schedule.  Backups move no data yet, so a run shows as
# the job leaving idle (空闲) and its log naming the scheduled time.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

export TZ=UTC
CLOCK=$T/clock
export VMFERRY_CLOCK_FILE=$CLOCK

conf=$T/conf
make_config "$conf" web01
rm "$conf/mig.yaml"
cat >"$conf/bak.yaml" <<YAML
kind: backup
name: hourly
source: { platform: src, vms: [db01] }
node: local
schedule: { type: hourly, interval: 1h, start: "00:00", mode: incremental }
YAML
cat >"$conf/bak2.yaml" <<YAML
kind: backup
name: later
source: { platform: src, vms: [db02] }
node: local
schedule: { type: daily, start: "18:00", mode: full }
YAML

runs() { ctl log "$1" "$2" -n 200 | grep -cF "scheduled run of $3" || true; }

set_clock "2026-12-02 10:30:00"
start_daemon "$conf"
wait_until 20 test "$(job_state hourly db01)" = idle || fail "the backup job did not come to idle: $(job_state hourly db01)"
ok "the hourly backup job waits in idle (空闲)"
ctl reload >/dev/null
sleep 0.5
assert_eq "$(job_state hourly db01)" idle "at 10:30 nothing is due: a rule first seen runs from then on"

set_clock "2026-12-02 10:59:59"
ctl reload >/dev/null
sleep 0.5
assert_eq "$(job_state hourly db01)" idle "one second before 11:00 nothing runs"

set_clock "2026-12-02 11:00:05"
ctl reload >/dev/null
wait_until 10 test "$(job_state hourly db01)" != idle || fail "the 11:00 run did not start"
ok "at 11:00 the hourly rule runs (the job left idle: $(job_state hourly db01))"
assert_eq "$(runs hourly db01 '2026-12-02 11:00 (incremental)')" 1 "its log names the scheduled time and mode once"
assert_eq "$(job_state later db02)" idle "the daily 18:00 rule does not run at 11:00"

set_clock "2026-12-02 12:00:10"
ctl reload >/dev/null
wait_until 10 sh -c "'$BIN/vmferryctl' -s '$SOCK' log hourly db01 -n 200 | grep -q 'scheduled run of 2026-12-02 12:00 skipped'" ||
	fail "the 12:00 run while the 11:00 one holds was not reported: $(ctl log hourly db01 -n 20)"
ok "the 12:00 run falls due while the 11:00 one is under way: skipped, not doubled"

# The daily rule's job sits idle; the daemon is down from 12:00 to 17:30
# the next day: 18:00 once missed, so one run at start, marked.
stop_daemon
set_clock "2026-12-03 18:30:00"
start_daemon "$conf"
wait_until 20 sh -c "'$BIN/vmferryctl' -s '$SOCK' log later db02 -n 200 | grep -q 'scheduled run of 2026-12-02 18:00, missed while the daemon was down'" ||
	fail "the missed 18:00 run was not made up at start: $(ctl log later db02 -n 20)"
ok "a daemon down over two 18:00 times runs the daily rule once at start, marked as missed"
assert_eq "$(ctl log later db02 -n 200 | grep -c 'scheduled run of' || true)" 1 "exactly one run for the missed times, not one per time"
wait_until 10 test "$(job_state later db02)" != idle || fail "the made-up run did not start the job"
ok "the made-up run started the job ($(job_state later db02))"

stop_daemon
echo "1..$NTEST"
