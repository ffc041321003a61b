#!/usr/bin/env bash
# What a migration refuses, with a clear reason and without side effects:
# a VM with an independent disk (seed: not supported), `migrate` outside
# 迁移就绪 (ready), a name clash with a target VM that the rule did not
# create, a missing source VM and a missing target host, a source whose
# certificate does not match the pinned thumbprint and a target that
# refuses the login (both at the first contact, not as a lost peer), and a
# source whose datastore answers range requests with the whole file or
# with other bytes than asked.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"indep01","host":"H0","power":"on","disks":[{"capacity":2097171,"seed":1,"allocated":0.5},
                                                           {"capacity":1048597,"seed":2,"mode":"independent_persistent"}]},
        {"name":"slow01","host":"H0","power":"on","disks":[{"capacity":6291473,"seed":3}]},
        {"name":"clash01","host":"H0","power":"on","disks":[{"capacity":1048601,"seed":4}]},
        {"name":"nohost01","host":"H0","power":"off","disks":[{"capacity":1048609,"seed":5}]},
        {"name":"pin01","host":"H0","power":"on","disks":[{"capacity":1048613,"seed":6}]},
        {"name":"pw01","host":"H0","power":"on","disks":[{"capacity":1048627,"seed":7}]},
        {"name":"norange01","host":"H0","power":"on","disks":[{"capacity":3145757,"seed":8}]},
        {"name":"shift01","host":"H0","power":"on","disks":[{"capacity":3145759,"seed":9}]}]}
JSON
cat >"$T/target-fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"clash01","host":"H0","power":"on","disks":[{"capacity":1048601,"seed":99}]}]}
JSON
MIG_TARGET_FIXTURE=$T/target-fixture.json mig_start_peers "$T/fixture.json"
mig_config
mig_rule ind indep01 "fast_transfer: true"
mig_rule clash clash01 "fast_transfer: true"
mig_rule ghost ghost01 "fast_transfer: true"
cat >"$CONF/21-nohost.yaml" <<YAML
kind: migration
name: nohost
source: { platform: src, vms: [nohost01] }
node: local
target: { platform: dst, datacenter: DC0, host: H9, datastore: ds0 }
YAML
echo wrong >"$CONF/secrets/wrong"
{
	mig_platform srcpin "$S_URL" 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF vc
	echo ---
	mig_platform dstpw "$D_URL" "$D_THUMB" wrong
} >"$CONF/11-refusing.yaml"
MIG_SRC=srcpin mig_rule pin pin01
MIG_DST=dstpw mig_rule pw pw01
clash_sha=$(dst_sha clash01 0)
start_daemon "$CONF"

# --- An independent disk.
wait_job ind indep01 failed 60
err=$(job_field ind indep01 error)
assert_match "$err" "independent disk" "a VM with an independent disk is refused"
assert_match "$err" "Hard disk 2.*independent_persistent" "the reason names the disk and its mode"
assert_match "$(ctl log ind indep01)" "cannot be migrated" "the log says why"
assert_eq "$(vm_count "$D_CTL" indep01)" 0 "no target VM is created for it"
assert_eq "$(snap_count indep01)" 0 "no snapshot is taken of it"
assert_eq "$(vm_power "$S_CTL" indep01)" poweredOn "the source is left running"
st=$(ctl --json stats ind indep01 | jq -r '.jobs[0] | "\(.successes) \(.failures)"')
assert_eq "$st" "0 1" "the statistics count one failure"
assert_eq "$(job_field ind indep01 unviewed_errors)" 0 "viewing the statistics clears the unviewed errors"
out=$(ctl migrate ind indep01 2>&1) && fail "migrate of a failed job must be refused"
assert_match "$out" "indep01 is failed \\(失败\\); migrate is not possible in that state" \
	"migrate of a failed job is refused, naming the state"
ctl start ind indep01 >/dev/null
wait_job ind indep01 failed 60
assert_match "$(job_field ind indep01 error)" "independent disk" "starting it again gives the same refusal"

# --- migrate outside ready (the rule starts now; its copy is slowed down to
# about 25 s, so that the refusals below happen during it even on a loaded
# machine under ASan).
mig_rule slow slow01 "fast_transfer: true" \
	'[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 256KiB/s } ]'
wait_job slow slow01 transferring 60
out=$(ctl migrate slow slow01 2>&1) && fail "migrate during the full copy must be refused"
assert_match "$out" "slow01 is transferring \\(迁移中\\); migrate is not possible in that state" \
	"migrate during the full copy is refused, naming the state"
out=$(ctl --json migrate slow slow01 2>/dev/null) || true
assert_eq "$(jq -r .ok <<<"$out")" false "the JSON answer says ok:false"
assert_match "$(jq -r .error <<<"$out")" "slow01 is transferring" "the JSON answer's error names the state"
out=$(ctl migrate slow nosuchvm 2>&1) && fail "migrate of an unknown VM must be refused"
assert_match "$out" "rule slow has no job for VM nosuchvm" "migrate of a VM that is not in the rule is refused, naming the VM"
out=$(ctl migrate nosuchrule slow01 2>&1) && fail "migrate of an unknown rule must be refused"
assert_match "$out" "no migration rule named nosuchrule" "migrate of an unknown rule is refused, naming the rule"
wait_job slow slow01 ready 120
ok "the refused migrate did not disturb the full copy"
ctl migrate slow slow01 >/dev/null || fail "migrate in ready must be accepted"
wait_job slow slow01 complete 120
check_complete slow slow01 1 "after the refusals"

# --- A VM of the same name on the target that the rule did not create.
wait_job clash clash01 failed 60
err=$(job_field clash clash01 error)
assert_match "$err" "clash01 already exists in folder DC0/vm on dst and was not created by this rule" "a name clash on the target fails with a clear reason"
assert_eq "$(vm_count "$D_CTL" clash01)" 1 "the clash creates no second VM"
assert_eq "$(dst_sha clash01 0)" "$clash_sha" "the foreign VM's disk is untouched"
assert_eq "$(vm_power "$D_CTL" clash01)" poweredOn "the foreign VM keeps running"
assert_eq "$(snap_count clash01)" 0 "no snapshot is left on the source"

# --- A missing source VM, a missing target host.
wait_job ghost ghost01 failed 60
assert_match "$(job_field ghost ghost01 error)" "VM ghost01 not found on platform src" "a missing source VM is reported"
wait_job nohost nohost01 failed 60
assert_match "$(job_field nohost nohost01 error)" "target host H9 not found" "a missing target host is reported"
assert_eq "$(vm_count "$D_CTL" nohost01)" 0 "no target VM for a rule with a missing host"

# --- A certificate that does not match the pin, a refused login: these
# are refusals (the job fails, naming the cause), not lost peers (失效).
wait_job pin pin01 failed 60
assert_match "$(job_field pin pin01 error)" "srcpin.*does not match the pinned thumbprint.*presented SHA-256 thumbprint $S_THUMB" \
	"a certificate that does not match the pin fails the job, naming the presented thumbprint"
wait_job pw pw01 failed 60
assert_match "$(job_field pw pw01 error)" "target platform dstpw.*login as user refused" "a refused login fails the job, naming it"
assert_nomatch "$(ctl log pin pin01; ctl log pw pw01)" "-> invalid" "neither was taken for a lost peer"
assert_eq "$(vm_count "$D_CTL" pin01) $(vm_count "$D_CTL" pw01) $(snap_count pin01) $(snap_count pw01)" "0 0 0 0" \
	"nothing was created on either side"

assert_eq "$(curl -sf "$D_CTL/vms" | jq -r '[.[].name] | join(",")')" "clash01,slow01" \
	"the target holds only the foreign VM and the one migrated VM"

# --- A datastore that ignores Range and sends the whole file (HTTP 200):
# the copy stops with that reason at once, and what came is not taken for
# the range asked (a retry would get the same answer).
fault "$S_CTL" '{"ignore_range":true}'
mig_rule norange norange01 "fast_transfer: true"
wait_job norange norange01 failed 60
assert_match "$(job_field norange norange01 error)" "range [0-9]+\\+[0-9]+ answered with HTTP 200" \
	"a whole file sent for a range fails the copy, naming the answer"
st=$(ctl --json stats norange norange01 | jq -r '.jobs[0] | "\(.successes) \(.failures)"')
assert_eq "$st" "0 1" "the statistics count one failure"
fault "$S_CTL" '{"ignore_range":false}'

# --- A 206 for other bytes than asked (its Content-Range one byte off):
# refused before a byte is written at the offset asked.
fault "$S_CTL" '{"shift_range":true}'
mig_rule shift shift01 "fast_transfer: true"
wait_job shift shift01 failed 60
assert_match "$(job_field shift shift01 error)" "range [0-9]+\\+[0-9]+ answered with Content-Range: bytes [0-9]+-[0-9]+/3145759" \
	"a 206 for other bytes than asked fails the copy, naming both ranges"
fault "$S_CTL" '{"shift_range":false}'
