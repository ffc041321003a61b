#!/usr/bin/env bash
# Security: secrets are never written, and the socket is private (issue #6).
#
# A random password for this run (with XML, URL and shell specials) is the
# only one the peers accept; the source reads it from a file, the target
# from the daemon's environment.  A whole migration runs (with sessions
# expiring, so it logs in again and again), beside a platform with a wrong
# password (another random secret), an unreachable platform and config
# files that are broken on the line that holds the secret.  Every output a
# user or a dashboard gets is captured: vmferryd -n and -n -p, every
# vmferryctl command in table and --json form, raw socket answers, the
# daemon's log, the state directory (LMDB data.mdb raw and dumped),
# temp_dir while the job is ready, and core files.  Then every byte is
# searched for either secret, raw (which also covers URL, XML and JSON
# encodings: the needle is the secret's alphanumeric part), in hex and in
# base64 at all three alignments.
#
# The daemon runs with umask 000: the socket is still 0660 and nothing in
# the state directory is readable by group or others.  A user outside the
# socket's group cannot connect; one in it can.
# CHAOS_FULL=1 copies larger disks (more staging data searched).
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/migrate_lib.sh"

if [ "${CHAOS_FULL:-0}" = 1 ]; then CAP=33554467; else CAP=2097169; fi

rand_alnum() { # N
	local s=""
	while [ ${#s} -lt "$1" ]; do s+=$(head -c 256 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9'); done
	echo "${s:0:$1}"
}
CORE=$(rand_alnum 16)
WCORE=$(rand_alnum 16)
SECRET="$CORE&<>\"' %+"     # 24 characters
WRONG="$WCORE&<>\"' %+"
[ ${#SECRET} -eq 24 ] || fail "test setup: secret length"
PEER_USER=vmadmin

cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"db01","host":"H0","power":"on","disks":[{"capacity":$CAP,"seed":7,"allocated":0.5},
                                                         {"capacity":1048583,"seed":8,"allocated":1.0}]}]}
JSON
echo '{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],"vms":[]}' >"$T/target.json"
start_peer S "$T/fixture.json" --user "$PEER_USER" --password "$SECRET"
start_peer D "$T/target.json" --user "$PEER_USER" --password "$SECRET"

CONF=$T/conf
mkdir -p "$CONF/secrets" "$T/out"
printf '%s\n' "$SECRET" >"$CONF/secrets/vc"
printf '%s\n' "$WRONG" >"$CONF/secrets/wrong"
platform() { # NAME URL PASSWORD_KEY: VALUE TLS
	printf -- '---\nkind: platform\nname: %s\nurl: %s\nusername: %s\n%s\ntls: %s\n' "$1" "$2" "$PEER_USER" "$3" "$4"
}
{
	platform src "$S_URL" "password_file: secrets/vc" "{ thumbprint: \"$S_THUMB\" }"
	platform dst "$D_URL" "password_env: VMF_TEST_SECRET" "{ thumbprint: \"$D_THUMB\" }"
	platform bad "$S_URL" "password_file: secrets/wrong" "{ thumbprint: \"$S_THUMB\" }"
	platform down https://127.0.0.1:1/sdk "password_file: secrets/vc" "{ insecure: true }"
	printf -- '---\nkind: node\nname: local\nrepository: repo\ntemp_dir: tmp\n'
} >"$CONF/10-platforms.yaml"
rule() { # NAME SOURCE VM OPTIONS
	printf 'kind: migration\nname: %s\nsource: { platform: %s, vms: [%s] }\nnode: local\ntarget: { platform: dst, datacenter: DC0, host: H0, datastore: ds0 }\noptions: { %s }\n' \
		"$1" "$2" "$3" "$4" >"$CONF/20-$1.yaml"
}
rule mv src db01 "fast_transfer: true, cutover: poweroff"
rule badr bad db01 "fast_transfer: true"
rule downr down ghost01 "fast_transfer: true"
# Broken files, broken on the secret's own line: a key people guess
# (password: ...), a YAML syntax error, a tab before the key.
cat >"$CONF/40-guess.yaml" <<YAML
kind: platform
name: guess
url: $S_URL
username: $PEER_USER
password: $SECRET
YAML
cat >"$CONF/41-syntax.yaml" <<YAML
kind: platform
name: syntax
url: $S_URL
username: $PEER_USER
password_file: [$SECRET
YAML
cat >"$CONF/42-tab.yaml" <<YAML
kind: platform
name: tab
url: $S_URL
username: $PEER_USER
	password_env: $SECRET
YAML

# --- vmferryd -n and -n -p.
VMF_TEST_SECRET=$SECRET "$BIN/vmferryd" -n -c "$CONF" >"$T/out/n-check.out" 2>&1 && fail "vmferryd -n accepted broken files"
VMF_TEST_SECRET=$SECRET "$BIN/vmferryd" -n -p -c "$CONF" >"$T/out/n-print.out" 2>&1 || true
out=$(cat "$T/out/n-check.out")
assert_match "$out" "40-guess.yaml:5:1: unknown key \"password\"" "a guessed password: key is refused with file:line:col"
assert_match "$out" "41-syntax.yaml:[56]:[0-9]+: " "a YAML error on the secret's line is reported with file:line:col"
assert_match "$out" "42-tab.yaml:5:[0-9]+: " "a tab before the secret's key is reported with file:line:col"
assert_match "$(cat "$T/out/n-print.out")" "password_source: file:secrets/vc" "vmferryd -n -p shows where a password comes from"
assert_match "$(cat "$T/out/n-print.out")" "password_source: env:VMF_TEST_SECRET" "... file or environment variable"

# --- The daemon, with umask 000 and the target's password in its environment.
curl -sf -XPOST "$S_CTL/fault" -d '{"session_expiry_s":2}' >/dev/null || fail "fault injection refused"
umask 000
VMF_TEST_SECRET=$SECRET start_daemon "$CONF"
umask 022
DPID=$DAEMON_PID
assert_eq "$(stat -c %a "$SOCK")" 660 "the socket is 0660 even with umask 000"
if tr '\0' '\n' <"/proc/$DPID/cmdline" | grep -qF "$CORE"; then fail "the secret is on vmferryd's command line"; fi
ok "the secret is not on vmferryd's command line"

# A user outside the socket's group cannot connect; one inside can.
chmod 711 "$T"
cp "$BIN/vmferryctl" "$T/vmferryctl" && chmod 755 "$T/vmferryctl"
sgid=$(stat -c %g "$SOCK")
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$T/vmferryctl" -s "$SOCK" ping 2>&1) &&
	fail "a user outside the socket's group connected: $out"
assert_match "$out" "Permission denied" "a user outside the socket's group is refused (Permission denied)"
out=$(setpriv --reuid=65534 --regid="$sgid" --clear-groups "$T/vmferryctl" -s "$SOCK" ping 2>&1) ||
	fail "a user in the socket's group (gid $sgid) could not connect: $out"
ok "a user in the socket's group (gid $sgid) connects"
chmod 700 "$T"

wait_job mv db01 ready 240
cp -a "$STATE/tmp" "$T/tmp-while-ready"
assert_match "$(find "$T/tmp-while-ready" -type f | tr '\n' ' ')" "vm-config.json" "temp_dir holds the saved VM configuration while ready"
wait_job badr db01 failed 60
wait_job downr ghost01 "invalid failed" 90
err=$(job_field badr db01 error)
assert_match "$err" "login as $PEER_USER refused \(wrong user name or password\)" "a wrong password: the job fails saying the login was refused"
err=$(job_field downr ghost01 error)
assert_match "$err" "down" "an unreachable platform: the job's error names the platform"

# --- Every output, in both forms.
c() { # NAME ARGS...: capture stdout+stderr of a vmferryctl command, both forms
	local name=$1; shift
	ctl "$@" >"$T/out/$name.txt" 2>&1 || true
	ctl --json "$@" >"$T/out/$name.json" 2>&1 || true
}
c ping ping
c rules rules
c jobs jobs
for r in mv badr downr; do c "show-$r" show "$r"; done
c log-mv log mv db01 -n 500
c log-badr log badr db01 -n 500
c log-downr log downr ghost01 -n 500
c stats stats
for p in src dst bad down; do c "inv-$p" inventory "$p" --refresh; done
c reload reload
for op in '{"op":"rules"}' '{"op":"show","rule":"badr"}' '{"op":"jobs"}' '{"op":"log","rule":"badr","vm":"db01"}' \
	'{"op":"inventory","platform":"bad","refresh":true}' '{"op":"stats"}'; do
	echo "$op" | timeout 30 socat - UNIX-CONNECT:"$SOCK" >>"$T/out/socket-raw.txt" 2>&1 || true
done
assert_match "$(cat "$T/out/inv-bad.txt")" "login as $PEER_USER refused \(wrong user name or password\)" \
	"inventory of the platform with a wrong password says the login was refused"
assert_match "$(cat "$T/out/inv-down.txt")" "down" "inventory of an unreachable platform names it"
assert_match "$(cat "$T/out/rules.txt")" "40-guess.yaml:5:1: unknown key" "vmferryctl rules lists the config errors"
assert_eq "$(jq -r .ok "$T/out/inv-src.json")" true "inventory of the source works with the secret"

# --- Finish the migration (logins go on: sessions expire every 2 s).
timeout 120 "$BIN/vmferryctl" -s "$SOCK" --json watch mv --until ready,complete >"$T/out/watch.json" 2>&1 || true
ctl migrate mv db01 >"$T/out/migrate.txt" 2>&1 || fail "vmferryctl migrate was refused"
wait_job mv db01 complete 240
for i in 0 1; do
	s=$(curl -sf "$S_CTL/disk?vm=db01&disk=$i" | jq -r .sha256)
	d=$(curl -sf "$D_CTL/disk?vm=db01&disk=$i" | jq -r .sha256)
	[ "$s" = "$d" ] || fail "disk $i of the target differs"
done
ok "the migration completes with identical disks"
logins=$(curl -sf "$S_CTL/stats" | jq '.methods.Login // 0')
[ "$logins" -ge 3 ] || fail "expected repeated logins with expiring sessions, saw $logins"
ok "the source was logged in to $logins times (sessions expired)"
c stats-end stats
c log-mv-end log mv db01 -n 500
curl -sf -XPOST "$S_CTL/fault" -d '{"clear":true}' >/dev/null

stop_daemon
perm=$(find "$STATE" -perm /077 | head -5)
assert_eq "$perm" "" "nothing in the state directory is accessible to group or others (umask 000)"
mdb_dump -a -p "$STATE/store" >"$T/out/mdb-dump.txt" 2>&1 || fail "mdb_dump failed: $(tail -2 "$T/out/mdb-dump.txt")"
find / -xdev -maxdepth 1 -name 'core*' -newer "$T/fixture.json" -print >"$T/out/cores-root.txt" 2>/dev/null || true
cores=$(find "$T" "$STATE" -name 'core' -o -name 'core.[0-9]*' -o -name '*.crash' | head -5)
assert_eq "$cores$(cat "$T/out/cores-root.txt")" "" "no core or crash file was written"

# --- Search everything written for both secrets.
needles() { # CORE: raw, hex, base64 at the three alignments
	local c=$1 pad pre=("" "x" "xx") b
	echo "$c"
	printf %s "$c" | od -An -tx1 | tr -d ' \n'
	echo
	for pad in 0 1 2; do
		b=$(printf '%s%s' "${pre[pad]}" "$c" | base64 -w0)
		echo "${b:$((pad ? 4 : 0)):16}"
	done
}
{ needles "$CORE"; needles "$WCORE"; } >"$T/needles"
roots=("$T/daemon.log" "$STATE" "$T/tmp-while-ready" "$T/out")
nfiles=$(find "${roots[@]}" -type f | wc -l)
nbytes=$(find "${roots[@]}" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
[ "$nfiles" -ge 40 ] && [ -s "$STATE/store/data.mdb" ] || fail "too little to search ($nfiles files)"
hits=$(grep -rlaiF -f "$T/needles" "${roots[@]}" || true)
assert_eq "$hits" "" "neither secret appears in any of $nfiles files ($nbytes bytes): logs, outputs, state, temp_dir"
# The search would see it: the config dir holds it, raw.
grep -qaF "$CORE" "$CONF/secrets/vc" || fail "test setup: the needle does not match the secret file"
echo "# figure: secrets: 2 random 24-character passwords searched (raw, hex, base64 x3) in $nfiles files / $nbytes bytes (log, every CLI output in table and JSON, raw socket, LMDB data.mdb and dump, temp_dir): 0 hits; $logins logins; socket 0660 under umask 000, refused to other users"
