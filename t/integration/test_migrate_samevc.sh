#!/usr/bin/env bash
# A migration inside one vCenter (seed 003's storage migration: another
# host and another datastore): source and target are the same platform.
# Under the source's own name in the same folder it is refused when the
# config is checked (vSphere names are unique per folder); with
# name: "{vm}-moved" it completes: the target VM sits on the other host
# and datastore with the source's bytes, the source is untouched (same
# name, running, same bytes, no snapshot left), and a VM called
# web01-moved in another folder is no clash.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

D1=4194305   # 4 MiB + 1
D2=1572864   # 1.5 MiB
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0","H1"],"datastores":["ds0","ds1"]}],
 "vms":[{"name":"web01","host":"H0","datastore":"ds0","power":"on","cpus":2,"memory_mb":1024,"nics":["VM Network"],
         "disks":[{"capacity":$D1,"seed":7,"allocated":0.4},{"capacity":$D2,"seed":8,"allocated":0.9}]},
        {"name":"web01-moved","folder":"elsewhere","host":"H1","datastore":"ds1","disks":[{"capacity":1048576,"seed":9}]}]}
JSON
start_peer S "$T/fixture.json"
mkdir -p "$CONF/secrets"
echo pass >"$CONF/secrets/vc"
{
	mig_platform vc "$S_URL" "$S_THUMB" vc
	printf -- '---\nkind: node\nname: local\nrepository: repo\ntemp_dir: tmp\n'
} >"$CONF/10-platforms.yaml"
rule() { # TARGET_EXTRA
	cat >"$CONF/20-move.yaml" <<YAML
kind: migration
name: move
source: { platform: vc, vms: [web01] }
node: local
target: { platform: vc, datacenter: DC0, host: H1, datastore: ds1$1 }
options: { fast_transfer: true, cutover: none }
YAML
}

# The source's name, the source's folder: refused before anything runs.
rule ""
out=$("$BIN/vmferryd" -n -c "$CONF" 2>&1) && fail "a same-platform rule keeping the names passed the check"
assert_match "$out" "20-move.yaml:5:[0-9]+: source and target are both platform \"vc\": the target VMs would get their sources' names in the same VM folder" \
	"the config check refuses the source's name in the source's folder, naming file, line and column"
assert_match "$out" "target.name another pattern" "the refusal says what to do"

rule ', name: "{vm}-moved"'
"$BIN/vmferryd" -n -c "$CONF" >/dev/null 2>&1 || fail "the rule with name {vm}-moved was refused: $("$BIN/vmferryd" -n -c "$CONF" 2>&1)"
ok "name: \"{vm}-moved\" passes the config check"

src_before=$(src_hashes web01 2)
vm_by() { curl -sf "$S_CTL/vms" | jq -c --arg n "$1" --arg f "$2" '[.[] | select(.name == $n and .folder == $f)]'; }
src_vm=$(vm_by web01 "")
decoy=$(vm_by web01-moved elsewhere)
start_daemon "$CONF"
wait_job move web01 ready 180
ctl migrate move web01 >/dev/null || fail "vmferryctl migrate was refused"
wait_job move web01 complete 180
ok "the storage migration completes"

moved=$(vm_by web01-moved "")
assert_eq "$(jq length <<<"$moved")" 1 "one web01-moved in the VM folder"
assert_eq "$(jq -r '.[0] | "\(.host) \(.datastores | join(","))"' <<<"$moved")" "H1 ds1" "the target is on the other host and datastore"
mref=$(jq -r '.[0].moref' <<<"$moved")
got=$(for i in 0 1; do sha "$S_CTL" "$mref" "$i"; done | paste -sd' ')
assert_eq "$got" "$src_before" "every target disk has the source's bytes"
assert_eq "$(jq -c '.[0] | [.cpus, .memory_mb, [.disks[].capacity]]' <<<"$moved")" "[2,1024,[$D1,$D2]]" \
	"the target has the source's CPUs, memory and disk sizes"

# The source is untouched.
now=$(vm_by web01 "")
assert_eq "$(jq -r '.[0].moref' <<<"$now")" "$(jq -r '.[0].moref' <<<"$src_vm")" "the source VM is still there under its name"
assert_eq "$(jq -r '.[0].power' <<<"$now")" poweredOn "the source keeps running (cutover: none)"
assert_eq "$(src_hashes web01 2)" "$src_before" "the source's disks are unchanged"
assert_eq "$(snap_count web01)" 0 "no snapshot left on the source"
assert_eq "$(jq -c '[.[0].disks[].file]' <<<"$now")" "$(jq -c '[.[0].disks[].file]' <<<"$src_vm")" "the source's disks are its own files still"
assert_eq "$(vm_by web01-moved elsewhere)" "$decoy" "the VM of the same name in another folder is untouched"
assert_match "$(ctl log move web01)" "creating target VM web01-moved on vc \(host H1, datastore ds1\)" "the log names the target"
