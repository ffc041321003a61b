#!/usr/bin/env bash
# The config directory is live: a dropped rule file shows up within 2 s, a
# broken edit keeps the running version and reports file:line:col, a
# removed rule stops its jobs without destroying anything, SIGHUP reloads.
. "$(dirname "$0")/lib.sh"

make_config "$T/conf" web01
start_daemon "$T/conf"

cat >"$T/conf/new.yaml.tmp" <<YAML
kind: replication
name: added
source: { platform: src, vms: [db01] }
node: local
target: { platform: dst, datacenter: DC0, host: H0, datastore: ds0 }
options: { auto_sync: false }
YAML
mv "$T/conf/new.yaml.tmp" "$T/conf/new.yaml"
t0=$(date +%s%N)
wait_until 2 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json rules | jq -e '.rules[] | select(.name == \"added\")'" ||
	fail "a dropped rule file shows up within 2 s"
ms=$((($(date +%s%N) - t0) / 1000000))
ok "a dropped rule file shows up within 2 s (${ms} ms)"
wait_until 2 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs added | jq '.jobs | length')\" = 1 ]" || fail "the new rule gets a job"
ok "the new rule gets a job"

# A broken edit: the rule keeps its last good version.
cat >"$T/conf/new.yaml" <<YAML
kind: replication
name: added
source: { platform: src, vms: [db01, db02] }
node: local
target: { platform: dst, datacenter: DC0, host: H0, datastore: ds0 }
options:
  auto_sync: false
  fast_tranfer: true
YAML
wait_until 3 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json rules | jq -e '.config_errors | length > 0'" || fail "broken edit is reported"
err=$(ctl --json rules | jq -r '.config_errors[0]')
assert_match "$err" "new\.yaml:8:3: .*fast_tranfer" "the error names file, line and column"
vms=$(ctl --json rules | jq -c '.rules[] | select(.name == "added") | .vms')
assert_eq "$vms" '["db01"]' "the running rule keeps its last good version"
assert_eq "$(job_state added db02)" none "nothing from the broken version runs"
assert_match "$(ctl rules)" "configuration errors" "the rules table shows the config error"

# Fixed: the new version applies.
sed -i '/fast_tranfer/d' "$T/conf/new.yaml"
wait_until 3 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json rules | jq -e '.config_errors | length == 0'" || fail "fixed file reloads"
wait_until 3 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs added | jq '.jobs | length')\" = 2 ]" || fail "fixed file adds the VM"
ok "a fixed file applies, with its new VM"

# Removal stops the jobs but keeps them (nothing destroyed).
rm "$T/conf/new.yaml"
wait_until 3 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs added | jq -r '[.jobs[].state] | unique | join(\",\")')\" = stopped ]" ||
	fail "removing the file stops the rule's jobs: $(ctl --json jobs added | jq -c '[.jobs[].state]')"
ok "removing a rule file stops its jobs and keeps them"
assert_match "$(ctl log added db01)" "no longer configured" "the log says why the job stopped"

# Put back through SIGHUP (inotify would also see it): jobs start again.
cp "$T/conf/mig.yaml" "$T/mig.bak"
cat >"$T/conf/new.yaml" <<YAML
kind: replication
name: added
source: { platform: src, vms: [db01, db02] }
node: local
target: { platform: dst, datacenter: DC0, host: H0, datastore: ds0 }
options: { auto_sync: false }
YAML
kill -HUP "$DAEMON_PID"
wait_until 3 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs added | jq -r '[.jobs[].state] | unique | join(\",\")')\" != stopped ]" ||
	fail "a rule put back starts its jobs again"
ok "a rule put back starts its jobs again"

# vmferryd -n on a broken directory prints file:line:col and fails.
mkdir -p "$T/bad"
cp -r "$T/conf/." "$T/bad/"
printf 'kind: migration\nname: x\nsource: { platform: nope, vms: [a] }\nnode: local\ntarget: { platform: dst, datacenter: DC0, host: H0, datastore: ds0 }\n' >"$T/bad/zz.yaml"
out=$("$BIN/vmferryd" -n -c "$T/bad" 2>&1) && fail "vmferryd -n must fail on a broken directory"
assert_match "$out" "zz\.yaml:3:[0-9]+: .*nope" "vmferryd -n names file:line:col of the unknown platform"
