#!/usr/bin/env bash
# The last good version of a rule file survives a restart: a file broken
# by an edit keeps its rule running across a restart, and the log says so
# as the reload does; a fix takes effect; a removed file is forgotten, so a
# broken file put back has no last good version; vmferryd -n ignores the
# store and checks the directory as it is.
. "$(dirname "$0")/lib.sh"

jobs_states() { ctl --json jobs "$1" | jq -r '[.jobs[] | .vm + "=" + .state] | sort | join(",")'; }
rule_vms() { ctl --json rules | jq -c --arg r "$1" '[.rules[] | select(.name == $r) | .vms][0]'; }
# log_since LINE: the daemon log after its first LINE lines.
log_since() { tail -n +"$(($1 + 1))" "$T/daemon.log"; }
log_lines() { wc -l <"$T/daemon.log"; }
log_has() { log_since "$1" | grep -q -- "$2"; }

make_config "$T/conf" web01
start_daemon "$T/conf"
wait_until 10 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs mig | jq '.jobs | length')\" = 1 ]" || fail "the rule gets its job"

# A broken edit: the reload keeps the last good version and says so.
cp "$T/conf/mig.yaml" "$T/mig.good"
mark=$(log_lines)
cat >"$T/conf/mig.yaml" <<YAML
kind: backup
name: mig
source: { platform: src, vms: [web01, web02] }
node: local
schedule: { once: "2099-01-01 00:00" }
options:
  fast_transfer: true
  fast_tranfer: true
YAML
wait_until 5 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json rules | jq -e '.config_errors | length > 0'" || fail "the broken edit is reported"
wait_until 5 log_has "$mark" 'configuration reloaded' || fail "the reload is logged"
reload_says=$(log_since "$mark" | grep -o 'config: .*' | sort)
assert_match "$reload_says" "mig\.yaml:8:3: .*fast_tranfer" "the reload logs file, line and column of the error"
assert_match "$reload_says" "mig\.yaml: the last good version of this file is in effect" "the reload says the last good version is in effect"

# Restart with the file still broken: what ran before runs again.
stop_daemon
mark=$(log_lines)
start_daemon "$T/conf"
assert_eq "$(rule_vms mig)" '["web01"]' "after a restart the rule is its last good version"
state=$(job_state mig web01)
[ "$state" != none ] && [ "$state" != stopped ] && ok "after a restart the rule's job still exists and runs ($state)" ||
	fail "after a restart the rule's job still exists and runs: $(ctl jobs mig)"
# (A job whose rule is gone stops as soon as it passes through starting.)
ctl stop mig web01 >/dev/null
wait_until 5 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs mig | jq -r '.jobs[0].state')\" = stopped ]" || fail "the job stops: $(ctl jobs mig)"
ctl start mig web01 >/dev/null
wait_until 5 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs mig | jq -r '.jobs[0].state')\" = idle ]" ||
	fail "started again, the job runs with its last good rule: $(ctl jobs mig; ctl log mig web01 | tail -3)"
ok "started again, the job runs with its last good rule"
assert_eq "$(job_state mig web02)" none "nothing from the broken version runs after the restart"
assert_match "$(ctl --json rules | jq -r '.config_errors[]')" "mig\.yaml:8:3: .*fast_tranfer" "the restarted daemon reports the error"
start_says=$(log_since "$mark" | grep -o 'config: .*' | sort)
assert_match "$start_says" "mig\.yaml:8:3: .*fast_tranfer" "the restart logs file, line and column of the error"
assert_match "$start_says" "mig\.yaml: the last good version of this file is in effect" "the restart says the last good version is in effect"
assert_eq "$start_says" "$reload_says" "the restart says exactly what the reload said"

# vmferryd -n does not use the store: the directory as it is fails.
out=$("$BIN/vmferryd" -n -c "$T/conf" 2>&1) && fail "vmferryd -n must fail on the broken directory"
assert_match "$out" "mig\.yaml:8:3: .*fast_tranfer" "vmferryd -n reports the broken file"
assert_nomatch "$out" "last good" "vmferryd -n knows no last good version"

# Fixed: the new version takes effect, and is what the next restart keeps.
sed -i '/fast_tranfer/d' "$T/conf/mig.yaml"
wait_until 5 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json rules | jq -e '.config_errors | length == 0'" || fail "the fixed file reloads"
wait_until 5 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs mig | jq '.jobs | length')\" = 2 ]" || fail "the fixed file adds its VM"
assert_eq "$(rule_vms mig)" '["web01","web02"]' "the fixed version takes effect"
printf '  fast_tranfer: true\n' >>"$T/conf/mig.yaml"
wait_until 5 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json rules | jq -e '.config_errors | length > 0'" || fail "broken again"
crash_daemon
start_daemon "$T/conf"
assert_eq "$(rule_vms mig)" '["web01","web02"]' "after kill -9 and a restart the last good version is the fixed one"
assert_nomatch "$(jobs_states mig)" "stopped" "both jobs run"

# Removed: its rule stops and its last good version is forgotten, so the
# broken file put back while the daemon is down has none.
rm "$T/conf/mig.yaml"
wait_until 5 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs mig | jq -r '[.jobs[].state] | unique | join(\",\")')\" = stopped ]" ||
	fail "removing the file stops the rule's jobs: $(jobs_states mig)"
ok "removing the file stops the rule's jobs"
stop_daemon
cp "$T/mig.good" "$T/conf/mig.yaml"
printf 'fast_tranfer: true\n' >>"$T/conf/mig.yaml"
mark=$(log_lines)
start_daemon "$T/conf"
assert_eq "$(rule_vms mig)" null "a broken file put back after its removal has no last good version"
assert_eq "$(jobs_states mig)" "web01=stopped,web02=stopped" "its jobs stay stopped"
assert_nomatch "$(log_since "$mark")" "last good version" "nothing is said to be in effect"
