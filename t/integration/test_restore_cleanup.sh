#!/usr/bin/env bash
# A restore that is given up leaves nothing of its own on the platform
# (issue #16): held in its landing (every delta PUT answered 503, its
# landing snapshot on the new VM), a stop removes the VM it created,
# snapshot and files with it; a failure (a delta PUT refused with 403)
# does the same and says so; a VM it did not make is never removed; a
# removal the platform does not answer (an outage) is said in the job's
# reason, a restore is refused meanwhile, and the next start removes the
# VM; a stop of a restore to the original VM in its landing removes the
# landing snapshot from it; a kill -9 during the removal finishes it
# after the restart; a delete removes the VM too.  Each time the peer's
# own view (its VM list, snapshots, datastore directory) is checked, and
# the restore asked again (the same name) completes with disks equal to
# the point.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"cl01","host":"H0","power":"on","disks":[{"capacity":$((6 * MiB + 512)),"seed":81,"allocated":0.7},{"capacity":$((3 * MiB)),"seed":82,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
bak_rule cl cl01 "fast_transfer: true"
bak_first_full cl cl01 2
LAND=vmferry-backup-cl-land

# No VM of the peer carries a snapshot the engine made.
engine_snaps() {
	local n
	for n in $(curl -sf "$S_CTL/vms" | jq -r '.[].name'); do
		curl -sf "$S_CTL/snapshots?vm=$n" | jq -r --arg vm "$n" '.[] | select(.name | startswith("vmferry-")) | "\($vm):\(.name)"'
	done
}

# gone NAME WHAT: the peer has no VM NAME, nor its directory on ds0, and
# no engine snapshot on any VM.
gone() {
	assert_eq "$(vm_count "$S_CTL" "$1")" 0 "$2: the peer lists no VM $1"
	assert_eq "$(ls -d "$S_DIR/ds0/$1"* 2>/dev/null | wc -l)" 0 "$2: no directory of $1 on the peer's datastore"
	assert_eq "$(engine_snaps)" "" "$2: no engine snapshot on any VM of the peer"
}

# retry NAME WHAT: the same restore again completes, equal to the point.
retry() {
	ctl restore cl cl01 --target new --name "$1" >/dev/null || fail "$2: the retry to $1 is refused"
	wait_job cl cl01 idle 120
	assert_eq "$(vm_count "$S_CTL" "$1")" 1 "$2: the retry made exactly one VM $1"
	assert_eq "$(src_hashes "$1" 2)" "$want" "$2: the retry's disks equal point 1 (the peer's SHA-256)"
	assert_eq "$(snap_count "$1")" 0 "$2: no snapshot on $1 after the retry"
}

# hold NAME: a restore to NAME held in its landing: the landing snapshot is
# on the new VM, every delta PUT answered 503 (retried, not failed).
hold() {
	fault "$S_CTL" '{"http_error":{"status":503,"fraction":1,"path":"/folder","method":"PUT"}}'
	ctl restore cl cl01 --target new --name "$1" >/dev/null || fail "the restore to $1 is refused"
	wait_until 60 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json show cl cl01 | jq -e '.details.restore.stage == \"landing\"' &&
		curl -sf '$S_CTL/snapshots?vm=$1' | jq -e 'any(.[]; .name == \"$LAND\")'" ||
		fail "the restore to $1 never reached its landing snapshot"
	ok "$1: the restore is landing (show), its snapshot $LAND on the new VM (the peer)"
	assert_eq "$(vm_count "$S_CTL" "$1")" 1 "$1: the peer holds the new VM, with the landing snapshot $LAND"
}

# 1. A stop in the landing.
hold cl01-a
ctl stop cl cl01 >/dev/null
wait_job cl cl01 stopped 30
fault "$S_CTL" '{"clear":true}'
log=$(ctl log cl cl01 -n 30)
assert_match "$log" "the restore of point 1 is given up" "stop: the log says the restore is given up"
assert_match "$log" "VM cl01-a \(vm-[0-9]+\), which the restore of point 1 created, is removed from src" \
	"stop: the log says the VM it created is removed"
gone cl01-a "stop in the landing"
assert_eq "$(ctl --json show cl cl01 | jq -r '.details.restore // "none"')" none "stop: show lists no restore"
ctl start cl cl01 >/dev/null
wait_job cl cl01 idle 30
ok "stop: start brings the job back to idle"
retry cl01-a "stop"

# 2. A failure: a delta PUT refused.
fault "$S_CTL" '{"http_error":{"status":403,"count":1,"path":"/folder","method":"PUT"}}'
ctl restore cl cl01 --target new --name cl01-b >/dev/null
wait_job cl cl01 failed 60
assert_match "$(job_field cl cl01 error)" "upload refused: HTTP 403" "failure: the reason names the refused upload"
wait_until 30 sh -c "'$BIN/vmferryctl' -s '$SOCK' log cl cl01 -n 20 | grep -q 'cl01-b (vm-[0-9]*), which the restore of point 1 created, is removed'" ||
	fail "failure: the VM cl01-b is not said removed: $(ctl log cl cl01 -n 20)"
ok "failure: the log says the VM the failed restore created is removed"
fault "$S_CTL" '{"clear":true}'
gone cl01-b "failed restore"
ctl start cl cl01 >/dev/null
wait_job cl cl01 idle 30
retry cl01-b "failure"

# A VM of the same name that the restore did not make is never removed:
# the restore is refused before it writes anything (cl01-b now stays).
ctl restore cl cl01 --target new --name cl01-b >/dev/null
wait_job cl cl01 failed 60
assert_match "$(job_field cl cl01 error)" "a VM named cl01-b already exists" "a restore onto an existing VM is refused"
sleep 1
assert_eq "$(vm_count "$S_CTL" cl01-b)" 1 "the refused restore left the VM cl01-b it did not make"
assert_eq "$(src_hashes cl01-b 2)" "$want" "... and unchanged"
ctl start cl cl01 >/dev/null
wait_job cl cl01 idle 30

# 3. A stop whose removal the platform does not answer (an outage).
hold cl01-c
fault "$S_CTL" '{"outage_s":60}'
ctl stop cl cl01 >/dev/null
wait_job cl cl01 stopped 60
err=$(job_field cl cl01 error)
assert_match "$err" "VM cl01-c \(vm-[0-9]+\), which the restore of point 1 created, could not be removed from src .*the next start or delete of the job tries again" \
	"outage: the reason says the VM could not be removed and when it is tried again"
assert_eq "$(vm_count "$S_CTL" cl01-c)" 1 "outage: the VM is still on the peer"
assert_eq "$(ctl --json show cl cl01 | jq -r '.details.restore.stage')" given_up "outage: show lists the restore as given_up"
out=$(ctl restore cl cl01 --target new --name cl01-d 2>&1 || true)
assert_match "$out" "VM cl01-c, which the restore of point 1 created, is still to be removed" \
	"outage: a new restore is refused until the VM is removed"
fault "$S_CTL" '{"clear":true}'
ctl start cl cl01 >/dev/null
wait_job cl cl01 idle 60
assert_match "$(ctl log cl cl01 -n 20)" "VM cl01-c \(vm-[0-9]+\), which the restore of point 1 created, is removed" \
	"outage: the next start removes the VM"
gone cl01-c "start after the outage"
retry cl01-c "outage"

# 4. The original VM (powered off, written since the point): a stop in
# the landing leaves no snapshot on it; the restore asked again is right.
curl -sf -XPOST "$S_CTL/power" -d '{"vm":"cl01","state":"off"}' >/dev/null || fail "the peer cannot power cl01 off"
for d in 0 1; do gwrite "{\"vm\":\"cl01\",\"disk\":$d,\"percent\":20,\"seed\":$((90 + d))}" >/dev/null; done
fault "$S_CTL" '{"http_error":{"status":503,"fraction":1,"path":"/folder","method":"PUT"}}'
ctl restore cl cl01 --point 1 >/dev/null || fail "the restore to the original is refused"
wait_until 60 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json show cl cl01 | jq -e '.details.restore.stage == \"landing\"' &&
	curl -sf '$S_CTL/snapshots?vm=cl01' | jq -e 'any(.[]; .name == \"$LAND\")'" ||
	fail "the restore to the original never reached its landing snapshot"
ok "original: the restore is landing, its snapshot $LAND on cl01 (the peer)"
ctl stop cl cl01 >/dev/null
wait_job cl cl01 stopped 30
fault "$S_CTL" '{"clear":true}'
assert_match "$(ctl log cl cl01 -n 20)" "removing snapshot $LAND \(snapshot-[0-9]+\) that the restore left on VM cl01" \
	"original: the stop removes the landing snapshot, and says so"
assert_eq "$(engine_snaps)" "" "original: no engine snapshot on any VM of the peer after the stop"
assert_eq "$(vm_count "$S_CTL" cl01)" 1 "original: the original VM stays"
ctl start cl cl01 >/dev/null
wait_job cl cl01 idle 30
ctl restore cl cl01 --point 1 >/dev/null || fail "original: the retry is refused"
wait_job cl cl01 idle 120
assert_eq "$(src_hashes cl01 2)" "$want" "original: the retry leaves cl01 equal to point 1 (the peer's SHA-256)"
assert_eq "$(engine_snaps)" "" "original: no engine snapshot after the retry"

# 5. kill -9 while a stop removes the VM (its PowerOffVM_Task held 3 s, so
# the Destroy_Task is never asked before the kill): after
# the restart the stop goes on from its record and removes the VM.
hold cl01-k
fault "$S_CTL" '{"delay":{"method":"PowerOffVM_Task","ms":3000}}'
ctl stop cl cl01 >/dev/null
wait_until 30 sh -c "'$BIN/vmferryctl' -s '$SOCK' log cl cl01 -n 10 | grep -q 'removing VM cl01-k'" ||
	fail "kill: the stop never began to remove cl01-k"
crash_daemon
assert_eq "$(vm_count "$S_CTL" cl01-k)" 1 "kill: the daemon is killed while the VM's removal is held"
# What a crash left in temp_dir/.trash (staging files are moved there and
# removed off the loop) is removed after the restart.
mkdir -p "$STATE/tmp/.trash/1-1-0"
head -c $MiB /dev/zero >"$STATE/tmp/.trash/1-1-0/restore-disk0.img"
start_daemon "$CONF"
wait_until 30 test ! -e "$STATE/tmp/.trash" && ok "kill: the restart removed what a crash left in temp_dir/.trash" ||
	fail "kill: temp_dir/.trash is still there after the restart: $(find "$STATE/tmp/.trash" | tr '\n' ' ')"
wait_job cl cl01 stopped 60
fault "$S_CTL" '{"clear":true}'
gone cl01-k "kill during the removal"
assert_eq "$(ctl --json show cl cl01 | jq -r '.details.restore // "none"')" none "kill: show lists no restore after the stop"
ctl start cl cl01 >/dev/null
wait_job cl cl01 idle 30
ok "kill: start brings the job back to idle"

# 6. A delete of the job in a restore's landing removes the VM it made.
hold cl01-e
ctl delete cl >/dev/null
wait_until 60 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs cl | jq '.jobs | length')\" = 0 ]" ||
	fail "delete: the job is not forgotten"
fault "$S_CTL" '{"clear":true}'
gone cl01-e "delete in the landing"
wait_until 30 test ! -e "$STATE/tmp/.trash" || fail "temp_dir/.trash did not empty"
assert_eq "$(find "$STATE/tmp" -name 'restore-disk*' | tr '\n' ' ')" "" "no restore's staging file is left in temp_dir"
stop_daemon
echo "1..$NTEST"
