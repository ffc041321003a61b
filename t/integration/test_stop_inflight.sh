#!/usr/bin/env bash
# vSphere calls in flight when their work is cancelled: a migration job
# deleted while its target VM is being created, and the daemon stopped
# (SIGTERM) while another migration waits for CreateVM_Task on the target
# and a backup for its snapshot on the source.  The calls never answer
# vmferryd, yet vmferryd exits 0 (stop_daemon checks it): in the ASan
# build that means LeakSanitizer found nothing, neither the cancelled
# calls' job tokens nor the jobs they held (issue #14).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"

cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"web01","host":"H0","power":"on","disks":[{"capacity":1048576,"seed":1,"allocated":0.5}]},
        {"name":"web02","host":"H0","power":"on","disks":[{"capacity":1048576,"seed":2,"allocated":0.5}]},
        {"name":"web03","host":"H0","power":"on","disks":[{"capacity":1048576,"seed":3,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
delayed() { curl -sf "$1/fault" | jq -r '.injected.delay // 0'; }

# Every target VM creation is held for a minute: web01's and web02's
# migrations wait for theirs.  Every source snapshot is held the same way:
# web03's backup waits for its own.
fault "$D_CTL" '{"delay":{"method":"CreateVM_Task","ms":60000}}'
fault "$S_CTL" '{"delay":{"method":"CreateSnapshot_Task","ms":60000}}'
mig_rule a web01 "fast_transfer: true"
mig_rule b web02 "fast_transfer: true"
bak_rule k web03 "fast_transfer: true"
start_daemon "$CONF"
wait_job k web03 idle 30
ctl run k web03 >/dev/null
held() { [ "$(delayed "$1")" -ge "$2" ]; }
wait_until 60 held "$D_CTL" 2 || fail "the target never held two CreateVM_Task calls (delay: $(delayed "$D_CTL"))"
wait_until 60 held "$S_CTL" 1 || fail "the source never held CreateSnapshot_Task (delay: $(delayed "$S_CTL"))"
ok "web01's and web02's target VMs and web03's backup snapshot are being made (the peers hold the calls)"

ctl delete b web02 >/dev/null
gone() { [ "$(job_state b web02)" = none ]; }
wait_until 30 gone ||
	fail "job b/web02 was not deleted: $(ctl jobs b)"
ok "job b/web02 deleted while its CreateVM_Task was in flight"

t0=$SECONDS
stop_daemon
ok "vmferryd stopped with calls in flight and exited 0 (under ASan: no leak)"
[ $((SECONDS - t0)) -lt 30 ] && ok "... without waiting for the held calls ($((SECONDS - t0)) s)" ||
	fail "vmferryd took $((SECONDS - t0)) s to stop: it waited for the held calls"
echo "1..$NTEST"
