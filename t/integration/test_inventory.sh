#!/usr/bin/env bash
# vmferryctl inventory through the daemon: the platform's VMs with the
# rules that claim them, the cache and --refresh, and clear errors for
# unknown platforms, wrong credentials, an untrusted certificate and an
# unreachable peer.
. "$(dirname "$0")/lib.sh"

start_peer P "$SRC/t/peer/fixtures/demo-source.json"
mkdir -p "$T/conf/secrets"
echo pass >"$T/conf/secrets/ok"
echo nope >"$T/conf/secrets/bad"
port_closed=$((20000 + RANDOM % 20000))
cat >"$T/conf/platforms.yaml" <<YAML
kind: platform
name: src
type: vsphere
url: $P_URL
username: user
password_file: secrets/ok
tls: { thumbprint: "$P_THUMB" }
---
kind: platform
name: badpass
type: vsphere
url: $P_URL
username: user
password_file: secrets/bad
tls: { thumbprint: "$P_THUMB" }
---
kind: platform
name: untrusted
type: vsphere
url: $P_URL
username: user
password_file: secrets/ok
---
kind: platform
name: gone
type: vsphere
url: https://127.0.0.1:$port_closed/sdk
username: user
password_file: secrets/ok
tls: { insecure: true }
---
kind: node
name: local
repository: repo
temp_dir: tmp
---
kind: migration
name: mv
source: { platform: src, vms: [web01] }
node: local
target: { platform: src, datacenter: DC0, host: DC0_H0, datastore: LocalDS_0, name: "{vm}-moved" }
YAML
start_daemon "$T/conf"
# The rule's job creates web01-moved on the same platform and reads the
# inventory as it goes; once it waits in ready it reads nothing more.
wait_until 120 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs mv | jq -r '.jobs[0].state')\" = ready ]" ||
	fail "mv/web01 never reached ready"

inv=$(ctl --json inventory src --refresh)
assert_eq "$(jq -r '[.vms[].name] | sort | join(",")' <<<"$inv")" "app01,db01,web01,web01-moved,web02" "inventory lists the platform's VMs"
assert_eq "$(jq -r '.vms[] | select(.name=="web01") | .claimed_by.migration' <<<"$inv")" mv "a VM claimed by a rule is marked with it"
assert_eq "$(jq -r '.vms[] | select(.name=="web02") | .claimed_by | length' <<<"$inv")" 0 "an unclaimed VM has no mark"
assert_match "$(ctl inventory src)" "web01 .*migration:mv \(已迁移\)" "the table shows the seed's (已迁移) mark"

# The cache answers until --refresh; a refresh sees a new VM.
curl -sf -XPOST "$P_CTL/power" -d '{"vm":"web02","state":"off"}' >/dev/null || true
cached=$(ctl --json inventory src | jq -r '.vms[] | select(.name=="web02") | .power')
assert_eq "$cached" poweredOn "without --refresh the cached inventory answers"
fresh=$(ctl --json inventory src --refresh | jq -r '.vms[] | select(.name=="web02") | .power')
assert_eq "$fresh" poweredOff "--refresh reads the platform again"

out=$(ctl inventory nosuch 2>&1) && fail "unknown platform must fail"
assert_match "$out" "no platform named nosuch" "an unknown platform is a clear error"
out=$(ctl inventory badpass 2>&1) && fail "wrong password must fail"
assert_match "$out" "login as user refused" "wrong credentials are a clear error"
assert_nomatch "$out" "nope" "the error does not show the password"
out=$(ctl inventory untrusted 2>&1) && fail "untrusted certificate must fail"
assert_match "$out" "thumbprint $P_THUMB" "an untrusted certificate's error shows its thumbprint"
out=$(ctl inventory gone 2>&1) && fail "unreachable platform must fail"
assert_match "$out" "gone unreachable" "an unreachable platform is a clear error"

# The daemon keeps answering other clients while an inventory is slow.
curl -sf -XPOST "$P_CTL/fault" -d '{"delay":{"method":"RetrievePropertiesEx","ms":8000}}' >/dev/null
ctl inventory src --refresh >"$T/slow.out" &
slow=$!
sleep 0.5
ctl ping >/dev/null || fail "ping failed"
kill -0 $slow 2>/dev/null && ok "other clients are answered while an inventory is still in flight" ||
	fail "the inventory finished before ping could show the loop was free"
wait $slow && ok "the slow inventory completes" || fail "slow inventory failed"
grep -q nope "$T/daemon.log" && fail "the password appears in the daemon log" || ok "the password never appears in the daemon log"
