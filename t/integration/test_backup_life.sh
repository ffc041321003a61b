#!/usr/bin/env bash
# A backup rule's life (seed 002, SPEC §10, issue #15), read back with the
# independent reader t/tools/repo_read.py and plain file listings:
#  - retention 3 over six points (full, incremental, incremental,
#    differential, incremental, incremental; the guest writes between them
#    so chunks differ): points 4, 5 and 6 remain, both in the repository
#    and in `vmferryctl show`; garbage collection freed exactly the chunks
#    only the deleted points used: the chunk files left are exactly the
#    chunks the remaining points' indexes name, their bytes the repository
#    had less those chunks' bytes (as the daemon's log counts them too);
#    every remaining point still reads back as the source was at its
#    snapshot;
#  - encryption (`encryption: { key_file }`, 64 hex digits) on a repository
#    of its own: after a full no chunk file holds a 64-byte piece of the
#    guest's data (the same search finds one in the plain repository);
#    with another key in the key file the next run fails saying the key is
#    not the repository's, and the repository is unchanged, file for file;
#    the right key back, the next run succeeds;
#  - delete_backup_data_on_rule_delete: `vmferryctl delete` of a rule with
#    it removes its points and garbage collection frees the chunks only
#    they used; a rule without it keeps its points (readable) after delete;
#  - group operations on a rule of two VMs: `run RULE` runs both, `stop
#    RULE` during a run stops both (no snapshot left, no point added),
#    `start RULE` brings both back to 空闲; a VM added to the rule's file
#    gets a job whose first point is a full.
# Garbage collection spares chunk files touched less than two seconds
# before it starts (docs/REPOSITORY.md): the runs here are 3 s apart.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"

MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"life01","host":"H0","power":"on","disks":[{"capacity":$((17 * MiB + 512)),"seed":11,"allocated":0.6},{"capacity":$((9 * MiB)),"seed":12,"allocated":0.5}]},
        {"name":"enc01","host":"H0","power":"on","disks":[{"capacity":$((9 * MiB + 4096)),"seed":21,"allocated":0.7}]},
        {"name":"del01","host":"H0","power":"on","disks":[{"capacity":$((10 * MiB)),"seed":31,"allocated":0.6}]},
        {"name":"keep01","host":"H0","power":"on","disks":[{"capacity":$((6 * MiB + 512)),"seed":32,"allocated":0.6}]},
        {"name":"g1","host":"H0","power":"on","disks":[{"capacity":$((8 * MiB)),"seed":41}]},
        {"name":"g2","host":"H0","power":"on","disks":[{"capacity":$((8 * MiB)),"seed":42}]},
        {"name":"g3","host":"H0","power":"on","disks":[{"capacity":$((5 * MiB + 512)),"seed":43,"allocated":0.5}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
start_daemon "$CONF"
slow='[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 1MiB/s } ]'

# run_point RULE VM MODE WHAT: a run of that mode completes (3 s after the
# last one, see above).
run_point() {
	sleep 3
	assert_match "$(ctl run "$1" "$2" ${3:+--mode $3})" "$2: (idle|complete) -> queued" "$4: vmferryctl run $1 $2${3:+ --mode $3}"
	wait_job "$1" "$2" complete 120
}
# guest_writes VM NDISKS SEED: the guest rewrites 5 % of every disk's grains.
guest_writes() {
	local d
	for ((d = 0; d < $2; d++)); do gwrite "{\"vm\":\"$1\",\"disk\":$d,\"percent\":5,\"seed\":$(($3 + d))}" >/dev/null; done
}
# read_back RULE VM SEQ NDISKS WHAT: each disk of the point, read by
# repo_read.py, has the hash kept in $T/at/VM.SEQ.DISK when it was made.
read_back() {
	local d
	for ((d = 0; d < $4; d++)); do
		assert_eq "$(repo_sha "$1" "$2" "$3" $d)" "$(cat "$T/at/$2.$3.$d")" "$5: point $3 disk $d reads back as the source was at its snapshot"
	done
}
keep_hashes() {
	local d
	mkdir -p "$T/at"
	for ((d = 0; d < $3; d++)); do src_sha "$1" $d >"$T/at/$1.$2.$d"; done
}
sum_sizes() { awk '{ n += $2 } END { print n + 0 }'; }
# The chunk files of the repository are exactly the chunks its complete
# points name: chunks_exact WHAT [REPO].
chunks_exact() {
	local repo=${2:-$(BAK_REPO)}
	repo_chunk_files "$repo" >"$T/files"
	repo_chunk_refs "$repo" >"$T/refs" || fail "$1: repo_read.py cannot list the chunks the points name"
	if cmp -s "$T/files" "$T/refs"; then
		ok "$1: the chunk files are exactly the $(wc -l <"$T/refs") chunks the complete points' indexes name"
	else
		fail "$1: chunk files and referenced chunks differ: $(comm -23 "$T/files" "$T/refs" | wc -l) files no point names, $(comm -13 "$T/files" "$T/refs" | wc -l) named chunks missing"
	fi
}

# ---- retention 3 over six points
bak_rule ret life01 "fast_transfer: true" 3
wait_job ret life01 idle 30
: >"$T/ever"
k=0
for mode in full incremental incremental differential incremental incremental; do
	k=$((k + 1))
	[ $k = 1 ] || guest_writes life01 2 $((100 + 10 * k))
	keep_hashes life01 $k 2
	run_point ret life01 $mode "retention"
	repo_chunk_refs "$(BAK_REPO)" ret life01 $k >"$T/ids.$k" || fail "retention: point $k's chunks cannot be listed"
	SIZES=1 repo_chunk_files >>"$T/ever"
	if [ $k -le 3 ]; then
		assert_eq "$(repo_points ret life01)" "$(seq -s, 1 $k)" "retention: after point $k, points 1..$k are kept"
		bytes_before=$(SIZES=1 repo_chunk_files | sum_sizes)
	fi
done
assert_eq "$(repo_points ret life01)" "4,5,6" "retention 3: after six points, points 4, 5 and 6 remain in the repository"
assert_eq "$(ctl --json show ret life01 | jq -r '[.details.points[].point] | join(",")')" "4,5,6" \
	"retention 3: vmferryctl show lists points 4, 5 and 6"
assert_eq "$(ctl --json show ret life01 | jq -r '[.details.points[].mode] | join(",")')" "differential,incremental,incremental" \
	"retention 3: with their modes"
sort -u "$T/ever" >"$T/ever.sizes"
sort -u "$T/ids.1" "$T/ids.2" "$T/ids.3" >"$T/ids.old"
sort -u "$T/ids.4" "$T/ids.5" "$T/ids.6" >"$T/ids.kept"
comm -23 "$T/ids.old" "$T/ids.kept" >"$T/ids.gone"
ngone=$(wc -l <"$T/ids.gone")
[ "$ngone" -gt 0 ] && ok "retention: $ngone chunks were used only by the deleted points 1-3" ||
	fail "retention: the guest's writes left no chunk to the deleted points alone"
assert_eq "$(comm -12 "$T/ids.gone" <(repo_chunk_files) | wc -l)" 0 "retention: garbage collection removed every chunk only the deleted points used"
chunks_exact "retention"
freed=$(join "$T/ids.gone" "$T/ever.sizes" | sum_sizes)
kept=$(join "$T/ids.kept" "$T/ever.sizes" | sum_sizes)
now=$(SIZES=1 repo_chunk_files | sum_sizes)
assert_eq "$now" "$kept" "retention: the chunk files hold $now bytes: those of the chunks points 4-6 use"
all=$(sort -u "$T/ids.old" "$T/ids.kept" | join - "$T/ever.sizes" | sum_sizes)
assert_eq "$((all - freed))" "$now" "retention: the repository's chunks shrank by the $freed bytes of the chunks only points 1-3 used"
logged=$(ctl log ret life01 -n 1000 | sed -nE 's/.*garbage collection: [0-9]+ chunks in use, [0-9]+ freed \(([0-9]+) bytes\).*/\1/p' |
	awk '{ n += $1 } END { print n + 0 }')
assert_eq "$logged" "$freed" "retention: the daemon's log counts the same bytes freed"
for k in 4 5 6; do
	read_back ret life01 $k 2 "retention"
	"$REPO_READ" "$(BAK_REPO)" check ret life01 $k >/dev/null || fail "retention: repo_read.py check of point $k"
done
ok "retention: repo_read.py checks every chunk id of points 4-6"

# ---- encryption, on a repository of its own
head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$T/enc.key"
echo >>"$T/enc.key"
cp "$T/enc.key" "$T/enc.key.good"
chmod 600 "$T/enc.key"
bak_rule enc enc01 "fast_transfer: true" 3 "repository: $T/encrepo
encryption: { key_file: $T/enc.key }"
wait_job enc enc01 idle 30
keep_hashes enc01 1 1
run_point enc enc01 full "encryption"
assert_eq "$(jq -c .encryption.cipher "$T/encrepo/repo.json")" '"aes-256-gcm"' "encryption: repo.json says the repository is encrypted"
# chunks_holding PATTERN_FILE REPO: chunk files that contain the pattern.
chunks_holding() {
	/usr/bin/python3 - "$1" "$2" <<'PY'
import os, sys
pat = open(sys.argv[1], "rb").read()
n = 0
for root, _, files in os.walk(os.path.join(sys.argv[2], "chunks")):
    for f in files:
        n += pat in open(os.path.join(root, f), "rb").read()
print(n)
PY
}
# pattern VM OUT: 64 bytes from the middle of an allocated grain of VM's
# first flat file on the source datastore.
pattern() {
	/usr/bin/python3 - "$(ls "$S_DIR"/ds0/"$1"/*-flat.vmdk | head -n1)" "$2" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
for g in range(len(data) // 65536 // 2, len(data) // 65536):
    piece = data[g * 65536 + 1000:g * 65536 + 1064]
    if piece.count(0) < 8:
        open(sys.argv[2], "wb").write(piece)
        sys.exit(0)
sys.exit("no allocated grain")
PY
}
pattern life01 "$T/life.pat" || fail "no allocated grain in life01's flat file"
[ "$(chunks_holding "$T/life.pat" "$(BAK_REPO)")" -gt 0 ] &&
	ok "encryption: the search finds a 64-byte piece of life01's data in the plain repository" ||
	fail "encryption: the search does not find life01's data in the plain repository"
pattern enc01 "$T/enc.pat" || fail "no allocated grain in enc01's flat file"
nchunks=$(repo_chunk_files "$T/encrepo" | wc -l)
[ "$nchunks" -gt 0 ] || fail "encryption: the full stored no chunk"
assert_eq "$(chunks_holding "$T/enc.pat" "$T/encrepo")" 0 "encryption: none of the $nchunks chunk files holds a 64-byte piece of enc01's data"
flags=$(find "$T/encrepo/chunks" -type f -exec sh -c 'od -An -j5 -N1 -tu1 "$1" | tr -d " "' _ {} \; | sort -u | paste -sd, -)
assert_match "$flags" '^[23](,[23])?$' "encryption: every chunk file is sealed with AES-256-GCM (flags $flags)"
listing() { find "$1" -printf '%P %y %s %T@\n' | sort; find "$1" -type f -exec sha256sum {} + | sort; }
listing "$T/encrepo" >"$T/enc.before"
head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$T/enc.key.new"
mv "$T/enc.key.new" "$T/enc.key"
sleep 1.1
ctl run enc enc01 >/dev/null
# runs_ended RULE VM N: the job's log shows N runs ended (complete or failed).
runs_ended() { [ "$(ctl log "$1" "$2" -n 1000 | grep -Ec -- '-> (failed|complete) \(event')" -ge "$3" ]; }
wait_until 60 runs_ended enc enc01 2 || fail "encryption: the run with another key did not end"
assert_eq "$(job_state enc enc01)" failed "encryption: with another key in the key file the next run fails"
assert_match "$(job_field enc enc01 error)" "the key in $T/enc.key is not the repository's key" "encryption: the job's error says the key is not the repository's"
listing "$T/encrepo" >"$T/enc.after"
cmp -s "$T/enc.before" "$T/enc.after" && ok "encryption: the refused run changed nothing in the repository" ||
	fail "encryption: the refused run changed the repository: $(diff "$T/enc.before" "$T/enc.after" | head -5)"
assert_eq "$(snap_count enc01)" 0 "encryption: no snapshot left on the source"
cp "$T/enc.key.good" "$T/enc.key"
ctl start enc enc01 >/dev/null
wait_job enc enc01 "idle complete" 30
keep_hashes enc01 2 1
run_point enc enc01 "" "encryption, the right key back"
assert_eq "$(ls "$T/encrepo/points/enc/enc01" | sort -n | paste -sd, -)" "1,2" "encryption: with the right key back the next run makes point 2"

# ---- delete_backup_data_on_rule_delete
bak_rule deld del01 "fast_transfer: true, delete_backup_data_on_rule_delete: true"
bak_rule keepd keep01 "fast_transfer: true"
wait_job deld del01 idle 30
wait_job keepd keep01 idle 30
for k in 1 2; do
	[ $k = 1 ] || { guest_writes del01 1 300; guest_writes keep01 1 310; }
	keep_hashes keep01 $k 1
	run_point deld del01 "" "delete_backup_data"
	run_point keepd keep01 "" "delete_backup_data"
done
repo_chunk_refs "$(BAK_REPO)" deld >"$T/del.ids"
repo_chunk_refs "$(BAK_REPO)" keepd >"$T/keep.ids"
[ "$(comm -23 "$T/del.ids" "$T/keep.ids" | wc -l)" -gt 0 ] || fail "delete_backup_data: del01's points share every chunk"
sleep 3
assert_match "$(ctl delete deld)" "del01" "delete_backup_data: vmferryctl delete deld"
wait_until 60 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs deld | jq '.jobs | length')\" = 0 ]" ||
	fail "delete_backup_data: the job of deld is not forgotten"
assert_eq "$(repo_points deld del01)" "" "delete_backup_data: the repository holds no point of deld any more"
assert_eq "$(comm -12 "$T/del.ids" <(repo_chunk_files) | comm -23 - "$T/keep.ids" | wc -l)" 0 \
	"delete_backup_data: no chunk file of the chunks only deld's points used is left"
chunks_exact "delete_backup_data"
assert_match "$(ctl delete keepd)" "keep01" "delete_backup_data: vmferryctl delete keepd (without the option)"
wait_until 60 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs keepd | jq '.jobs | length')\" = 0 ]" ||
	fail "delete_backup_data: the job of keepd is not forgotten"
assert_eq "$(repo_points keepd keep01)" "1,2" "delete_backup_data: without the option the points stay"
read_back keepd keep01 1 1 "delete_backup_data (kept)"
read_back keepd keep01 2 1 "delete_backup_data (kept)"

# ---- group operations
bak_rule grp "g1 g2" "fast_transfer: true"
wait_job grp g1 idle 30
wait_job grp g2 idle 30
out=$(ctl run grp)
assert_match "$out" "g1: idle -> queued" "group: vmferryctl run grp runs g1"
assert_match "$out" "g2: idle -> queued" "group: vmferryctl run grp runs g2"
wait_job grp g1 complete 120
wait_job grp g2 complete 120
assert_eq "$(repo_points grp g1) $(repo_points grp g2)" "1 1" "group: each VM has its point 1"
bak_rule grp "g1 g2" "fast_transfer: true" 7 "bandwidth: $slow"
reload_config
out=$(ctl run grp --mode full)
assert_match "$out" "g1: complete -> queued" "group: a second run of grp (paced) starts g1"
assert_match "$out" "g2: complete -> queued" "group: and g2"
# Both transferring and data moving: the rule's 1 MiB/s is shared, and
# one job may file its first 4 MiB chunk only when the other is nearly
# done, so that bytes done by both is no state that lasts.
wait_until 60 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json jobs grp | jq -e '([.jobs[] | select(.state == \"transferring\")] | length) == 2 and ([.jobs[].bytes_done] | add) > 0' >/dev/null" ||
	fail "group: g1 and g2 did not both start transferring"
out=$(ctl stop grp)
assert_match "$out" "g1: transferring -> (stopping|stopped)" "group: vmferryctl stop grp stops g1 during its run"
assert_match "$out" "g2: transferring -> (stopping|stopped)" "group: and g2"
wait_job grp g1 stopped 60
wait_job grp g2 stopped 60
ok "group: both jobs are stopped (停止)"
assert_eq "$(snap_count g1) $(snap_count g2)" "0 0" "group: the stopped runs left no snapshot on the source"
assert_eq "$(repo_points grp g1) $(repo_points grp g2)" "1 1" "group: the stopped runs added no point"
out=$(ctl start grp)
assert_match "$out" "g1: stopped -> " "group: vmferryctl start grp starts g1"
assert_match "$out" "g2: stopped -> " "group: and g2"
wait_job grp g1 idle 30
wait_job grp g2 idle 30
ok "group: both back to 空闲 (idle)"
bak_rule grp "g1 g2 g3" "fast_transfer: true"
wait_until 30 sh -c "[ \"\$('$BIN/vmferryctl' -s '$SOCK' --json jobs grp | jq -r '[.jobs[].vm] | sort | join(\",\")')\" = g1,g2,g3 ]" ||
	fail "group: adding g3 to the rule's file made no job for it"
ok "group: adding g3 to the rule's file makes a job for it"
wait_job grp g3 idle 30
assert_eq "$(job_state grp g1) $(job_state grp g2)" "idle idle" "group: g1 and g2 rest in 空闲 through the edit"
keep_hashes g3 1 1
run_point grp g3 "" "group"
assert_match "$(ctl log grp g3 -n 100)" "restore point 1: full" "group: g3's log says its first point is a full"
assert_eq "$("$REPO_READ" "$(BAK_REPO)" manifest grp g3 1 | jq -r .mode)" full "group: g3's point 1 is a full in the repository"
read_back grp g3 1 1 "group"
chunks_exact "the end"
stop_daemon
echo "1..$NTEST"
