#!/usr/bin/env bash
# After kill -9 and a restart every job keeps its state; after SIGTERM too.
. "$(dirname "$0")/lib.sh"

make_config "$T/conf" web01 web02 web03
start_daemon "$T/conf"
wait_until 10 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs | jq '.jobs | length')\" = 3 ]" || fail "three jobs"
ctl stop mig web02 >/dev/null
ctl delete mig web03 >/dev/null
wait_until 5 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs mig | jq -r '[.jobs[].state] | join(\",\")')\" = idle,stopped ]" ||
	fail "states settle: $(ctl --json jobs | jq -c '[.jobs[] | .vm + "=" + .state]')"
before=$(ctl --json jobs | jq -c '[.jobs[] | {vm, state}] | sort_by(.vm)')
crash_daemon
start_daemon "$T/conf"
after=$(ctl --json jobs | jq -c '[.jobs[] | {vm, state}] | sort_by(.vm)')
assert_eq "$after" "$before" "kill -9 and restart: every job keeps its state"
assert_match "$(ctl log mig web02)" "stopped by the user" "the job log survives the crash"
assert_eq "$(job_state mig web03)" none "a deleted job is not re-created from its unchanged rule"

stop_daemon
start_daemon "$T/conf"
again=$(ctl --json jobs | jq -c '[.jobs[] | {vm, state}] | sort_by(.vm)')
assert_eq "$again" "$before" "SIGTERM and restart: every job keeps its state"

ctl start mig web03 >/dev/null
wait_until 5 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs mig | jq '.jobs | length')\" = 3 ]" || fail "start brings a deleted job back"
ok "start brings a deleted job back"
