#!/usr/bin/env bash
# Instant recovery (瞬时恢复, SPEC §11, issue #16): `restore RULE VM
# --target instant` serves each disk of a backup point as an NBD export
# (nbdkit with the project's plugin under the cow filter), straight from
# the repository.
#  - the bootable guest backed up at gen=1, bumped to gen=2 and backed up:
#    the second point, served, boots under qemu-system-x86_64 (software
#    emulation) from the export and prints gen=2;
#  - nbdinfo sees every export with its disk's size; qemu-img compare finds
#    each export identical to the point's disk as t/tools/repo_read.py reads
#    it — for an encrypted repository too (on a loopback port);
#  - writes into the exports (qemu-io, nbdcopy) land in the overlay: no
#    file of either repository changes (checksums), verify stays clean;
#  - kill -9 of the daemon: the exports serve on, adopted, not doubled; an
#    nbdkit that died meanwhile is started again; `instant --stop` ends the
#    processes and removes the overlay;
#  - refusals: a whole rule (instant recovery serves one VM), an unknown
#    point, an address that is not loopback.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"
need_boot
for t in nbdkit nbdinfo nbdcopy qemu-img qemu-io; do
	command -v $t >/dev/null || skip_test "$t not found (tools/setup installs nbdkit, libnbd-bin, qemu-utils)"
done
[ -f "$BIN/nbdkit-vmferry-plugin.so" ] || skip_test "$BIN/nbdkit-vmferry-plugin.so was not built (nbdkit-plugin-dev)"
/usr/bin/python3 -c "import cryptography" 2>/dev/null || skip_test "python3-cryptography is not installed"

# nbdkit as the daemon starts it: through a wrapper that, while $T/slow
# exists, waits 3 s first (a daemon killed while an nbdkit starts).
cat >"$T/nbdkit" <<SH
#!/bin/sh
[ ! -e "$T/slow" ] || sleep 3
exec nbdkit "\$@"
SH
chmod +x "$T/nbdkit"
export VMFERRY_NBDKIT=$T/nbdkit

# The nbdkit processes live on their own: end them with the test.
instant_pids() { cat "$STATE"/instant/*/d*.pid 2>/dev/null || true; }
instant_cleanup() {
	local p
	for p in $(instant_pids); do kill -9 "$p" 2>/dev/null || true; done
}
trap 'rc=$?; instant_cleanup; it_cleanup $rc' EXIT
# nbdkit processes serving from this test's state directory.
nbdkits() { pgrep -f -- "-P $STATE/instant/" | wc -l; }
# (pgrep lists no zombies: their command line is gone)

C0=6303089   # 6 MiB + 12401
C1=3149825   # 3 MiB + 4097
C2=5243879   # 5 MiB + 999
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"boot01","host":"H0","power":"on",
         "disks":[{"capacity":$C0,"seed":61,"allocated":0.4,"boot":true,"gen":1},
                  {"capacity":$C1,"seed":62,"allocated":0.5}]},
        {"name":"enc01","host":"H0","power":"on","disks":[{"capacity":$C2,"seed":63,"allocated":0.6}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$T/enc.key"
chmod 600 "$T/enc.key"
bak_rule ibak boot01 "fast_transfer: true"
bak_rule ienc enc01 "fast_transfer: true" 7 "repository: $T/encrepo
encryption: { key_file: $T/enc.key }"
start_daemon "$CONF"
wait_job ibak boot01 idle 30
wait_job ienc enc01 idle 30

# ---- the points: gen=1, then gen=2; an encrypted one
ctl run ibak boot01 --mode full >/dev/null
wait_job ibak boot01 complete 120
assert_eq "$(gwrite '{"vm":"boot01","disk":0,"gen":2}' | jq .bytes)" 512 "the guest bumps its generation to 2"
gwrite '{"vm":"boot01","disk":1,"percent":5,"seed":64}' >/dev/null
ctl run ibak boot01 --mode incremental >/dev/null
wait_job ibak boot01 complete 120
ctl run ienc enc01 --mode full >/dev/null
wait_job ienc enc01 complete 120
assert_eq "$(repo_points ibak boot01)" "1,2" "two points of boot01 (gen=1, gen=2)"
assert_eq "$(jq -c .encryption.cipher "$T/encrepo/repo.json")" '"aes-256-gcm"' "ienc's repository is encrypted"

# Every file of both repositories, before anything is served.
repo_sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
repo_sums "$(BAK_REPO)" >"$T/repo.before"
repo_sums "$T/encrepo" >"$T/enc.before"

# ---- refusals
rc=0; out=$(ctl restore ibak --target instant 2>&1) || rc=$?
assert_eq "$rc" 1 "an instant recovery of a whole rule is refused"
assert_match "$out" "needs a VM" "... saying it serves one VM's disks"
rc=0; out=$(ctl restore ibak boot01 --point 9 --target instant 2>&1) || rc=$?
assert_eq "$rc" 1 "an instant recovery of a point that is not there is refused"
assert_match "$out" "no point 9 \(its points: 1, 2\)" "... naming the points there are"
rc=0; out=$(ctl restore ibak boot01 --target instant --listen 10.1.2.3:10809 2>&1) || rc=$?
assert_eq "$rc" 1 "an address that is not loopback is refused"
assert_match "$out" "only a loopback address" "... saying why"
assert_eq "$(nbdkits)" 0 "no nbdkit runs after the refusals"

# ---- point 2 of boot01 served on Unix sockets
out=$(ctl restore ibak boot01 --point 2 --target instant) || fail "restore --target instant was refused: $out"
assert_match "$out" "nbd\+unix:///\?socket=$STATE/instant/[0-9]+/d1.sock" "restore --target instant answers with the NBD URIs"
list=$(ctl --json instant)
ID=$(jq -r '.instant[] | select(.rule == "ibak") | .id' <<<"$list")
uri() { ctl --json instant | jq -r --argjson id "$1" --argjson d "$2" '.instant[] | select(.id == $id) | .disks[$d].uri'; }
U0=$(uri "$ID" 0) U1=$(uri "$ID" 1)
assert_eq "$(nbdkits)" 2 "one nbdkit per disk"
assert_match "$(ctl instant)" "^$ID +ibak +boot01 +2 +1 .* running +nbd\+unix" "vmferryctl instant lists the exports"

for d in 0 1; do
	u=$(uri "$ID" $d)
	want=$(curl -sf "$S_CTL/vms" | jq --arg n boot01 --argjson d $d '.[] | select(.name == $n) | .disks[$d].capacity')
	assert_eq "$(nbdinfo --json "$u" | jq '.exports[0]."export-size"')" "$want" "nbdinfo: disk $d is served with its size"
	"$REPO_READ" "$(BAK_REPO)" image ibak boot01 2 $d "$T/p2-$d.raw" || fail "repo_read.py cannot read point 2 disk $d"
	qemu-img compare -q -f raw -F raw "$u" "$T/p2-$d.raw" && ok "qemu-img compare: disk $d's export is point 2's disk" ||
		fail "qemu-img compare: disk $d's export differs from point 2's disk"
	"$REPO_READ" "$(BAK_REPO)" image ibak boot01 1 $d "$T/p1-$d.raw" || fail "repo_read.py cannot read point 1 disk $d"
	rc=0; qemu-img compare -q -f raw -F raw "$u" "$T/p1-$d.raw" || rc=$?
	assert_eq "$rc" 1 "qemu-img compare: disk $d's export is not point 1's (the comparison can fail)"
done

"$SRC/t/tools/boot_check.sh" "$U0" raw 2 >"$T/boot.out" 2>&1 &&
	ok "the export of point 2 boots under qemu and prints gen=2 ($(cat "$T/boot.out"))" ||
	fail "the export of point 2 does not boot with gen=2: $(cat "$T/boot.out")"
rc=0; BOOT_TIMEOUT=20 "$SRC/t/tools/boot_check.sh" "$U0" raw 1 >"$T/boot.out" 2>&1 || rc=$?
assert_eq "$rc" 1 "the boot check expecting gen=1 from point 2's export fails"

# ---- the encrypted repository, on loopback ports
# PORT for ienc and the recovery refused on it, PORT+1 for its second disk, PORT+7 for http.
PORT=$(free_ports 8)
out=$(ctl restore ienc enc01 --target instant --listen 127.0.0.1:$PORT) || fail "instant recovery of ienc refused: $out"
EID=$(ctl --json instant | jq -r '.instant[] | select(.rule == "ienc") | .id')
E0=$(uri "$EID" 0)
assert_eq "$E0" "nbd://127.0.0.1:$PORT" "the encrypted point is served on the loopback port asked for"
"$REPO_READ" --key "$T/enc.key" "$T/encrepo" image ienc enc01 1 0 "$T/e1.raw" || fail "repo_read.py --key cannot read ienc"
assert_eq "$(sha256sum <"$T/e1.raw" | cut -d' ' -f1)" "$(src_sha enc01 0)" "repo_read.py --key reads the encrypted point as the source is"
qemu-img compare -q -f raw -F raw "$E0" "$T/e1.raw" && ok "qemu-img compare: the encrypted point's export is its disk" ||
	fail "qemu-img compare: the encrypted point's export differs"

# A recovery that cannot be served (its port is taken) fails whole.
rc=0; out=$(ctl restore ibak boot01 --point 1 --target instant --listen 127.0.0.1:$PORT 2>&1) || rc=$?
assert_eq "$rc" 1 "an instant recovery whose port is taken fails"
assert_match "$out" "disk 0: nbdkit failed: .*(in use|bind)" "... with nbdkit's reason"
assert_eq "$(ctl --json instant | jq '.instant | length')" 2 "... and is not listed"
assert_eq "$(nbdkits)" 3 "... and leaves no nbdkit"
assert_eq "$(ctl --json stats ibak boot01 | jq -r '.jobs[0] | "\(.successes) \(.failures)"')" "3 1" \
	"ibak counts two backups and a recovery as successes, the failed recovery as a failure"

# ---- writes land in the overlays, never in the repository
qemu-io -f raw -c "write -P 0xa5 0 1M" "$U1" >/dev/null || fail "qemu-io could not write into disk 1's export"
qemu-io -f raw -c "read -P 0xa5 0 1M" "$U1" | grep -q 'read 1048576' && ok "qemu-io reads back what it wrote into the export" ||
	fail "the export does not give back what qemu-io wrote"
head -c 1048576 /dev/urandom >"$T/rand"
nbdcopy "$T/rand" "$E0" || fail "nbdcopy into the encrypted export failed"
assert_eq "$(nbdcopy "$E0" - | head -c 1048576 | sha256sum | cut -d' ' -f1)" "$(sha256sum <"$T/rand" | cut -d' ' -f1)" \
	"nbdcopy wrote into the encrypted export"
ls -l /proc/"$(ctl --json instant | jq -r --argjson id "$EID" '.instant[] | select(.id == $id) | .disks[0].pid')"/fd |
	grep -q "$STATE/instant/$EID/overlay/.*(deleted)" && ok "the cow overlay is a file under the recovery's own overlay/" ||
	fail "no overlay file of nbdkit under $STATE/instant/$EID/overlay"
repo_sums "$(BAK_REPO)" | diff "$T/repo.before" - >/dev/null && ok "no file of the repository changed" ||
	fail "files of the repository changed: $(repo_sums "$(BAK_REPO)" | diff "$T/repo.before" - | head -5)"
repo_sums "$T/encrepo" | diff "$T/enc.before" - >/dev/null && ok "no file of the encrypted repository changed" ||
	fail "files of the encrypted repository changed"
ctl verify ibak >/dev/null && ok "verify ibak stays clean" || fail "verify ibak: $(ctl verify ibak)"
ctl verify ienc >/dev/null && ok "verify ienc stays clean" || fail "verify ienc: $(ctl verify ienc)"

# ---- /metrics counts them
cat >>"$CONF/00-system.yaml" <<YAML
http: { listen: "127.0.0.1:$((PORT + 7))" }
YAML
ctl reload >/dev/null
wait_until 10 curl -sf "http://127.0.0.1:$((PORT + 7))/metrics" || fail "no /metrics on 127.0.0.1:$((PORT + 7))"
assert_match "$(curl -sf "http://127.0.0.1:$((PORT + 7))/metrics")" '^vmferry_instant_recoveries_running 2$' \
	"/metrics: two instant recoveries running"

# ---- statistics and log like any restore
assert_match "$(ctl log ibak boot01)" "瞬时恢复 $ID \(point 2\): disk 1 served by nbdkit" "the job's log tells of the instant recovery"
assert_eq "$(ctl --json stats ienc enc01 | jq -r '.jobs[0] | "\(.successes) \(.failures)"')" "2 0" \
	"the instant recovery counts as a success (a backup and a recovery)"

# ---- kill -9 of the daemon: the exports serve on, adopted, not doubled
before=$(ctl --json instant | jq -c '[.instant[].disks[].pid] | sort')
crash_daemon
qemu-io -f raw -c "read -P 0xa5 0 1M" "$U1" | grep -q 'read 1048576' && ok "with the daemon dead the export serves on, with its overlay" ||
	fail "the export stopped with the daemon"
start_daemon "$CONF"
wait_until 20 bash -c "[ \"\$($BIN/vmferryctl -s $SOCK --json instant | jq '[.instant[].disks[] | select(.running)] | length')\" = 3 ]" ||
	fail "after the restart the exports are not all running: $(ctl instant)"
assert_eq "$(ctl --json instant | jq -c '[.instant[].disks[].pid] | sort')" "$before" "after kill -9 the same nbdkit processes are adopted"
assert_eq "$(nbdkits)" 3 "no nbdkit is doubled"
qemu-io -f raw -c "read -P 0xa5 0 1M" "$U1" | grep -q 'read 1048576' && ok "what was written before the crash is still in the overlay" ||
	fail "the overlay lost what was written"

# An nbdkit that dies while the daemon is down is started again.
kill -9 "$(ctl --json instant | jq -r --argjson id "$EID" '.instant[] | select(.id == $id) | .disks[0].pid')"
crash_daemon
start_daemon "$CONF"
wait_until 30 qemu-img compare -q -f raw -F raw "$E0" "$T/e1.raw" ||
	fail "the encrypted export is not back after the restart: $(ctl instant)"
ok "an nbdkit gone with the daemon is started again at restart, serving the point (its overlay is new)"
assert_eq "$(nbdkits)" 3 "three nbdkit processes, none doubled"
# ... and one that dies while the daemon runs, by the watchdog.
old=$(ctl --json instant | jq -r --argjson id "$EID" '.instant[] | select(.id == $id) | .disks[0].pid')
kill -9 "$old"
wait_until 20 bash -c "p=\$($BIN/vmferryctl -s $SOCK --json instant | jq -r --argjson id $EID '.instant[] | select(.id == \$id) | .disks[0] | select(.running) | .pid'); [ -n \"\$p\" ] && [ \"\$p\" != $old ]" ||
	fail "the watchdog did not start the killed nbdkit again: $(ctl instant)"
qemu-img compare -q -f raw -F raw "$E0" "$T/e1.raw" && ok "an nbdkit killed while the daemon runs is started again by the watchdog" ||
	fail "the restarted export does not serve the point"
assert_match "$(ctl log ienc enc01)" "disk 0: nbdkit $old is gone; it is started again" "the job's log says so"
"$SRC/t/tools/boot_check.sh" "$U0" raw 2 >"$T/boot.out" 2>&1 && ok "after the restarts point 2 still boots with gen=2" ||
	fail "after the restarts point 2 does not boot: $(cat "$T/boot.out")"

repo_sums "$(BAK_REPO)" | diff "$T/repo.before" - >/dev/null && ok "after the crashes and restarts, no file of the repository changed" ||
	fail "files of the repository changed"

# ---- retention keeps a point that is served (its chunks stay for the VM)
bak_rule ibak boot01 "fast_transfer: true" 1
ctl reload >/dev/null
assert_eq "$(gwrite '{"vm":"boot01","disk":0,"gen":3}' | jq .bytes)" 512 "the guest bumps its generation to 3"
gwrite '{"vm":"boot01","disk":1,"percent":5,"seed":65}' >/dev/null
ctl run ibak boot01 --mode incremental >/dev/null
wait_job ibak boot01 complete 120
assert_eq "$(repo_points ibak boot01)" "2,3" "retention 1: point 1 deleted, point 2 kept while an instant recovery serves it"
assert_match "$(ctl log ibak boot01)" "retention 1: point 2 kept: an instant recovery serves it" "the job's log says why point 2 stays"
"$REPO_READ" "$(BAK_REPO)" check ibak boot01 2 >/dev/null && ok "every chunk of point 2 is still in the repository" ||
	fail "chunks of the served point 2 are gone"
for d in 0 1; do
	"$REPO_READ" "$(BAK_REPO)" image ibak boot01 2 $d "$T/p2b-$d.raw" && cmp -s "$T/p2-$d.raw" "$T/p2b-$d.raw" ||
		fail "point 2 disk $d does not read back as it did"
done
ok "point 2 reads back as before the retention"

# ---- kill -9 while an nbdkit starts: it is adopted once up, never doubled
"$REPO_READ" "$(BAK_REPO)" image ibak boot01 3 0 "$T/p3-0.raw" || fail "repo_read.py cannot read point 3"
touch "$T/slow"
ctl restore ibak boot01 --point 3 --target instant >/dev/null 2>&1 &
PIDS+=($!)
wait_until 10 bash -c "$BIN/vmferryctl -s $SOCK --json instant | jq -e '.instant[] | select(.point == 3)'" ||
	fail "the instant recovery of point 3 is not recorded"
SID=$(ctl --json instant | jq -r '.instant[] | select(.point == 3) | .id')
crash_daemon
rm -f "$T/slow"
start_daemon "$CONF"
wait_until 30 bash -c "[ \"\$($BIN/vmferryctl -s $SOCK --json instant | jq --argjson id $SID '[.instant[] | select(.id == \$id) | .disks[] | select(.running)] | length')\" = 2 ]" ||
	fail "the recovery started before the crash is not served after the restart: $(ctl instant)"
for d in 0 1; do
	assert_eq "$(pgrep -fc -- "-P $STATE/instant/$SID/d$d.pid")" 1 "kill -9 while starting: one nbdkit for disk $d"
done
assert_eq "$(nbdkits)" 5 "five nbdkit processes for five disks"
qemu-img compare -q -f raw -F raw "$(uri "$SID" 0)" "$T/p3-0.raw" && ok "the recovery started across the crash serves point 3" ||
	fail "the recovery started across the crash does not serve point 3"
assert_match "$(ctl instant --stop "$SID")" "stopped" "instant --stop $SID"

# ---- instant --stop
pids=$(ctl --json instant | jq -r --argjson id "$ID" '.instant[] | select(.id == $id) | .disks[].pid')
assert_match "$(ctl instant --stop "$ID")" "instant recovery $ID stopped" "instant --stop $ID"
# (a zombie waiting for its reaper, PID 1 here, has ended)
alive() { [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" | grep -q '^[ZX]'; }
for p in $pids; do
	alive "$p" && fail "nbdkit $p still runs after instant --stop"
done
ok "its nbdkit processes are gone"
[ ! -e "$STATE/instant/$ID" ] && ok "its directory (sockets, overlay) is removed" || fail "$STATE/instant/$ID is still there"
assert_eq "$(ctl --json instant | jq --argjson id "$ID" '[.instant[] | select(.id == $id)] | length')" 0 "instant no longer lists it"
nbdinfo "$U0" >/dev/null 2>&1 && fail "its export still answers" || ok "its export no longer answers"
rc=0; out=$(ctl instant --stop "$ID" 2>&1) || rc=$?
assert_match "$out" "no instant recovery $ID" "stopping it again is refused"
assert_match "$(ctl log ibak boot01)" "瞬时恢复 $ID \(point 2\): stopped" "the job's log tells of the stop"
# Deleting a rule with its data keeps the point a recovery serves.
bak_rule ienc enc01 "fast_transfer: true, delete_backup_data_on_rule_delete: true" 7 "repository: $T/encrepo
encryption: { key_file: $T/enc.key }"
ctl reload >/dev/null
assert_match "$(ctl delete ienc)" "enc01" "vmferryctl delete ienc (delete_backup_data_on_rule_delete)"
wait_until 60 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs ienc | jq '.jobs | length')\" = 0 ]" ||
	fail "the job of ienc is not forgotten"
assert_eq "$("$REPO_READ" --key "$T/enc.key" "$T/encrepo" points ienc enc01)" "ienc/enc01/1" \
	"delete_backup_data_on_rule_delete keeps the point an instant recovery serves"
assert_match "$(cat "$T/daemon.log")" "point 1 kept: an instant recovery serves it" "... and says so"
qemu-img compare -q -f raw -F raw "$E0" "$T/e1.raw" && ok "the encrypted export still serves its point" ||
	fail "the encrypted export no longer serves its point"
assert_eq "$(ctl instant --stop "$EID" | grep -c stopped)" 1 "instant --stop of the encrypted one (its rule deleted)"
assert_eq "$(nbdkits)" 0 "no nbdkit is left"
ctl run ibak boot01 --mode incremental >/dev/null
wait_job ibak boot01 complete 120
assert_eq "$(repo_points ibak boot01)" "4" "once nothing serves it, retention 1 deletes point 2 too"
stop_daemon
grep -q 'Sanitizer' "$T/daemon.log" && fail "the daemon reported: $(grep -A5 Sanitizer "$T/daemon.log" | head -20)" ||
	ok "the daemon stops cleanly (no sanitizer report in an ASan build)"
