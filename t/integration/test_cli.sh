#!/usr/bin/env bash
# The daemon on the shipped example configuration answers the CLI: rules,
# jobs (pending included), show, log, stats, ping; --json carries the
# fields SPEC §5 promises; the socket is mode 0660.
. "$(dirname "$0")/lib.sh"

cp -r "$SRC/config/examples" "$T/conf"
# The examples point at the demo's peers (18443, 18444); a demo running
# meanwhile must not change what this test sees: no peer answers here.
sed -i 's|127.0.0.1:18443|127.0.0.1:1|; s|127.0.0.1:18444|127.0.0.1:2|' "$T/conf/platforms.yaml"
start_daemon "$T/conf"

mode=$(stat -c %a "$SOCK")
assert_eq "$mode" 660 "status socket has mode 0660"

out=$(ctl rules)
assert_match "$out" "move-web +migration" "rules lists the migration rule"
nrules=$(ctl --json rules | jq '.rules | length')
expected=$("$BIN/vmferryd" -n -c "$T/conf" | sed -n 's/^configuration OK: \([0-9]*\) rules.*/\1/p')
assert_eq "$nrules" "$expected" "rules lists every configured rule"

wait_until 10 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs move-web | jq '.jobs | length')\" = 2 ]" ||
	fail "move-web has two jobs"
ok "move-web has a job per VM"

fields=$(ctl --json jobs | jq -r '.jobs[0] | [has("rule"),has("vm"),has("kind"),has("state"),has("label_zh"),has("label_en"),has("progress"),has("bytes_done"),has("bytes_total"),has("rate_bps"),has("error")] | all')
assert_eq "$fields" true "every job object carries the SPEC §5 fields"

zh=$(ctl --json jobs move-web | jq -r '.jobs[0].label_zh')
assert_match "$zh" "^(启动|排队中|创建新虚机)$" "a new migration job shows a seed label"

out=$(ctl jobs move-web)
assert_match "$out" "web01" "jobs table names the VM"

out=$(ctl show move-web)
assert_match "$out" "rule move-web \(migration\)" "show prints the rule"
assert_match "$out" "fast_transfer" "show prints the rule's options"

out=$(ctl log move-web web01)
assert_match "$out" "job created in state starting" "log shows the job's history"

# Slots follow the states: the jobs holding one are those in slot states,
# never more than max_tasks (4); waiting jobs are shown as pending.
jobs=$(ctl --json jobs)
active=$(jq .active <<<"$jobs")
in_slots=$(jq '[.jobs[] | select(.state | IN("creating_vm","fetching_config","querying_changes","transferring","cutting_over","preparing","saving_config","checking_data","restoring"))] | length' <<<"$jobs")
assert_eq "$active" "$in_slots" "the active count is the jobs in slot-holding states"
[ "$active" -le 4 ] && ok "max_tasks 4 bounds the jobs holding slots ($active)" || fail "$active jobs hold slots"
assert_eq "$(jq '[.jobs[] | select(.pending)] | length' <<<"$jobs")" "$(jq .pending <<<"$jobs")" "pending jobs are shown as pending"

# Replication jobs reach for their platforms as migration's do: none
# answers here, so they go 失效 and say when they try again.
wait_until 30 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json jobs | jq -e '[.jobs[] | select(.kind == \"replication\" and .state == \"invalid\")] | length > 0'" ||
	fail "no replication job went 失效 with its platform unreachable: $(ctl jobs)"
rep=$(ctl --json jobs | jq -r '[.jobs[] | select(.kind == "replication" and .state == "invalid")][0] | "\(.rule) \(.vm)"')
assert_match "$(ctl log $rep)" "will try again in" "a replication job whose platform is unreachable is 失效 and says when it tries again"

out=$(ctl migrate move-web web01 2>&1) && fail "migrate outside ready must fail"
assert_match "$out" "migrate is not possible" "migrate outside ready is refused with a reason"

out=$(ctl stop move-web web01)
assert_match "$out" "web01: .* -> stopping" "stop moves the job to stopping"
wait_until 5 sh -c "[ \"\$(VMFERRY_BIN='$BIN' '$BIN/vmferryctl' -s '$SOCK' --json jobs move-web | jq -r '.jobs[] | select(.vm==\"web01\") | .state')\" = stopped ]" ||
	fail "job reaches stopped"
ok "stopped job rests in stopped"
assert_eq "$(job_state move-web web01)" stopped "job_state helper agrees"

out=$(ctl start move-web web01)
assert_match "$out" "web01: stopped -> starting" "start restarts a stopped job"

out=$(ctl --json stats move-web | jq '.jobs | length')
assert_eq "$out" 2 "stats shows each VM of the rule"

out=$(ctl show nosuchrule 2>&1) && fail "unknown rule must fail"
assert_match "$out" "no rule named nosuchrule" "an unknown rule is a clear error"

out=$(ctl inventory nosuchplatform 2>&1) && fail "unknown platform must fail"
assert_match "$out" "no platform named nosuchplatform" "an unknown platform is a clear error"

stop_daemon
[ ! -e "$SOCK" ] && ok "SIGTERM shuts down and removes the socket" || fail "socket left behind"
