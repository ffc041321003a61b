#!/usr/bin/env bash
# Migrations through transient faults, injected on the peers: 5 % HTTP 503
# on every request (SOAP, datastore reads and the upload), connections
# dropped in the middle of datastore bodies, sessions that expire every
# few seconds, uploads refused at cutover, and a source outage of 25 s
# during the copy (the job shows 失效 / invalid meanwhile and resumes by
# itself).  Every migration
# completes with the source's bytes, no snapshot left and one target VM.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"e503","host":"H0","power":"on","disks":[{"capacity":4194317,"seed":1,"allocated":0.7},{"capacity":3145741,"seed":2},{"capacity":1048579,"seed":3,"allocated":0.3}]},
        {"name":"drop","host":"H0","power":"on","disks":[{"capacity":6291469,"seed":4},{"capacity":2097163,"seed":5,"allocated":0.5}]},
        {"name":"expiry","host":"H0","power":"on","disks":[{"capacity":8388617,"seed":6,"allocated":0.9}]},
        {"name":"upl","host":"H0","power":"on","disks":[{"capacity":2097191,"seed":9,"allocated":0.5},{"capacity":1048601,"seed":10}]},
        {"name":"outage","host":"H0","power":"on","disks":[{"capacity":12582929,"seed":7},{"capacity":1048589,"seed":8}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config
start_daemon "$CONF"
injected() { curl -sf "$1/fault" | jq -r ".injected.$2"; }
slow='[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 1MiB/s } ]'

# --- 5 % HTTP 503 on both peers, every path.
fault "$S_CTL" '{"http_error":{"status":503,"fraction":0.05,"path":"*"},"seed":7}'
fault "$D_CTL" '{"http_error":{"status":503,"fraction":0.05,"path":"*"},"seed":8}'
mig_rule r503 e503 "fast_transfer: true, auto_migrate: true"
wait_job r503 e503 complete 150
n=$(($(injected "$S_CTL" http_error) + $(injected "$D_CTL" http_error)))
[ "$n" -gt 0 ] && ok "the migration completes through $n injected HTTP 503 answers" || fail "no 503 was injected"
fault "$S_CTL" '{"clear":true}'
fault "$D_CTL" '{"clear":true}'
check_complete r503 e503 3 "HTTP 503"
assert_eq "$(ctl --json stats r503 e503 | jq -r '.jobs[0] | "\(.successes) \(.failures)"')" "1 0" \
	"transient errors are not counted as failures"

# --- Bodies dropped half way (20 % of the datastore reads).
fault "$S_CTL" '{"drop":{"fraction":0.2},"seed":9}'
mig_rule rdrop drop "fast_transfer: true, auto_migrate: true"
wait_job rdrop drop complete 150
n=$(injected "$S_CTL" drop)
[ "$n" -gt 0 ] && ok "the migration completes through $n dropped connections" || fail "no connection was dropped"
fault "$S_CTL" '{"clear":true}'
check_complete rdrop drop 2 "dropped bodies"

# --- Sessions expiring every 2 s on both peers; the copy is slowed down so
# that it outlives several sessions.
fault "$S_CTL" '{"session_expiry_s":2}'
fault "$D_CTL" '{"session_expiry_s":2}'
stats_reset
mig_rule rexp expiry "fast_transfer: true, auto_migrate: true" "$slow"
wait_job rexp expiry complete 150
logins=$(curl -sf "$S_CTL/stats" | jq -r '.methods.Login // 0')
[ "$logins" -gt 1 ] && ok "the migration completes while sessions expire (logged in $logins times)" ||
	fail "expected re-logins, saw $logins logins"
fault "$S_CTL" '{"clear":true}'
fault "$D_CTL" '{"clear":true}'
check_complete rexp expiry 1 "expiring sessions"

# --- The uploads at cutover answered with HTTP 503 three times (only PUTs
# are refused, so the fault is armed before the job starts).
fault "$D_CTL" '{"http_error":{"status":503,"count":3,"path":"/folder","method":"PUT"}}'
mig_rule rupl upl "fast_transfer: true, auto_migrate: true"
wait_job rupl upl complete 150
assert_eq "$(injected "$D_CTL" http_error)" 3 "three uploads were refused with HTTP 503"
fault "$D_CTL" '{"clear":true}'
check_complete rupl upl 2 "uploads refused at cutover"

# --- A 25 s outage of the source in the middle of the copy.
mig_rule rout outage "fast_transfer: true" "$slow"
wait_job rout outage transferring 60
wait_until 60 sh -c "[ \$('$BIN/vmferryctl' -s '$SOCK' --json jobs rout | jq '.jobs[0].bytes_done') -gt 7340032 ]" ||
	fail "the copy did not get past 7 MiB"
# (past a checkpoint: they are taken every 2 s, and 1MiB/s gives 7 MiB in 7 s)
fault "$S_CTL" '{"outage_s":25}'
ok "source outage of 25 s starts during the copy"
seen=
end=$((SECONDS + 60))
while [ $SECONDS -lt $end ]; do
	j=$(job_json rout outage)
	if [ "$(jq -r .state <<<"$j")" = invalid ]; then seen=$j; break; fi
	sleep 0.5
done
[ -n "$seen" ] || fail "the job never showed invalid during the outage"
# What the source served of disk 0 before it went away (nothing is served
# during the outage; by now the requests it cut have ended).
served0=$(file_served outage outage-flat.vmdk)
assert_eq "$(jq -r '"\(.state) \(.label_zh)"' <<<"$seen")" "invalid 失效" "during the outage the job is 失效 (invalid)"
assert_match "$(jq -r .error <<<"$seen")" "." "the invalid job says why"
progress=$(jq -r .bytes_done <<<"$seen")
wait_job rout outage ready 150
ok "after the outage the copy resumes by itself and reaches ready"
resume=$(resume_offsets rout outage 0 | tail -1)
[ -n "$resume" ] && [ "$resume" -gt 0 ] && ok "the copy continued from its checkpoint (offset $resume)" ||
	fail "no resume of disk 0 in the log: $(ctl log rout outage -n 5)"
# The copy resumed where it stood at the outage: the failed requests
# recorded a checkpoint at the lowest of the chunks in flight
# (host_buffer_cap 8 MiB / (4 tasks per host x transfer_buffer 1 MiB) = 2
# chunks of 1 MiB), not the last periodic one (up to 2 s x 1 MiB/s
# behind).  So the progress the job showed in 失效 (disk 0 comes first)
# counts at most the other chunk above the resume offset, and what the
# source had served of disk 0 (fully allocated, read in order) at most
# both chunks.
[ "$resume" -le "$progress" ] && [ "$progress" -le $((resume + 1048576)) ] &&
	ok "the copy resumed where the progress stood at the outage ($resume, progress $progress)" ||
	fail "the copy resumed at $resume; the progress at the outage was $progress"
[ "$resume" -le "$served0" ] && [ "$served0" -le $((resume + 2097152)) ] &&
	ok "the copy resumed where the source's reads of disk 0 had stopped ($resume, $served0 served)" ||
	fail "the copy resumed at $resume; the source had served $served0 bytes of disk 0"
assert_eq "$(file_served outage outage-flat.vmdk)" $((served0 + 12582929 - resume)) \
	"after the outage the source served only the rest of disk 0"
ctl migrate rout outage >/dev/null || fail "migrate refused"
wait_job rout outage complete 150
check_complete rout outage 2 "source outage"
assert_eq "$(ctl --json stats rout outage | jq -r '.jobs[0].successes')" 1 "the outage ends in one success"
