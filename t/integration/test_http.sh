#!/usr/bin/env bash
# The HTTP listener (SPEC §13, issue #17): during a migration and a backup
# between test peers, a /metrics scrape passes `promtool check metrics`
# and its values equal `vmferryctl jobs --json` at the same moment;
# /api/v1/jobs equals the socket's answer; /api/v1/events streams the
# watch events; a POST without the token gets 401, with a wrong one 403,
# and changes nothing, with the token it works; label values of VMs named
# with quotes, backslashes and markup are escaped; the dashboard's files
# are served and nothing outside them; hostile HTTP (oversized headers and
# bodies, a slow client, 1,000 idle connections, malformed requests)
# leaves `vmferryctl ping` answering; a SIGHUP with a new address rebinds,
# and without a token file the API only reads.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"
. "$(dirname "$0")/backup_lib.sh"

command -v promtool >/dev/null || skip_test "promtool is not installed (Debian package prometheus; tools/setup)"
TOOL=$SRC/t/tools/http_tool.py
MiB=1048576

PORT=$(free_ports 1)
H=http://127.0.0.1:$PORT
TOKEN=vmferry-test-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
AUTH="Authorization: Bearer $TOKEN"

hcode() { curl -s -o /dev/null -w '%{http_code}' --path-as-is "$@"; }
hget() { curl -sf -H "$AUTH" "$@"; }
ping_ms() {
	local t0 t1
	t0=$(date +%s%N)
	ctl ping >/dev/null || return 1
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}
ping_fast() {
	local ms
	ms=$(ping_ms) || fail "$1: vmferryctl ping does not answer"
	[ "$ms" -le 1000 ] && ok "$1: vmferryctl ping answers (${ms} ms)" || fail "$1: ping took $ms ms"
}

cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"web01","host":"H0","power":"on","disks":[{"capacity":$((24 * MiB)),"seed":41,"allocated":1.0}]},
        {"name":"bak01","host":"H0","power":"on","disks":[{"capacity":$((24 * MiB)),"seed":42,"allocated":1.0}]}]}
JSON
mig_start_peers "$T/fixture.json"
mig_config "transfer_buffer: 1MiB
host_buffer_cap: 8MiB
http: { listen: \"127.0.0.1:$PORT\", token_file: secrets/http-token }"
printf '%s\n' "$TOKEN" >"$CONF/secrets/http-token"
SLOW='[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 2MiB/s } ]'
mig_rule mv web01 "fast_transfer: true" "$SLOW"
bak_rule bk bak01 "fast_transfer: true" 7 "bandwidth: $SLOW"
# Names a platform may send: they become label values and JSON strings.
cat >"$CONF/30-names.yaml" <<'YAML'
kind: backup
name: names
source: { platform: src, vms: ['q"uote\back', '<img src=x onerror=alert(1)>'] }
node: local
options: { fast_transfer: true }
retention: 1
schedule: { once: "2099-01-01 00:00" }
YAML
start_daemon "$CONF"
wait_until 10 curl -s -o /dev/null "$H/" || fail "nothing listens on $H"
ok "vmferryd listens on $H"

# --- the token ------------------------------------------------------------
assert_eq "$(hcode "$H/api/v1/jobs")" 401 "GET /api/v1/jobs without the token: 401"
assert_eq "$(hcode -H 'Authorization: Bearer wrong-token-wrong-token' "$H/metrics")" 403 "/metrics with a wrong token: 403"
assert_eq "$(hcode -H "$AUTH" "$H/api/v1/jobs")" 200 "GET /api/v1/jobs with the token: 200"
assert_eq "$(hcode "$H/")" 200 "the dashboard's index without a token: 200"
grep -q 'refused: wrong token' "$T/daemon.log" && ok "a wrong token is logged" || fail "no log line for the wrong token"
grep -q -- "$TOKEN" "$T/daemon.log" && fail "the token is in the log" || ok "the log never holds the token"
grep -q 'wrong-token-wrong-token' "$T/daemon.log" && fail "a presented token is in the log" || ok "nor a presented one"

# --- during a migration and a backup --------------------------------------
wait_job mv web01 transferring 60
ctl run bk bak01 --mode full >/dev/null || fail "run bk refused"
wait_job bk bak01 transferring 60

# one job's values as the socket shows them, and the slots
sock_job() { ctl --json jobs "$1" | jq -c --arg vm "$2" '.jobs[] | select(.vm == $vm) | [.state, .bytes_done, .bytes_total, .rate_bps, .progress, .unviewed_errors]'; }
sock_slots() { ctl --json ping | jq -c '[.active, .pending]'; }
# metrics_equal RULE VM WHAT: a scrape between two equal socket answers
# (nothing moved meanwhile) must say the same; retried until one is
# taken between two such answers.
metrics_equal() {
	local i a b m sa sb mm ms
	for i in $(seq 1 100); do
		a=$(sock_job "$1" "$2")
		sa=$(sock_slots)
		m=$(hget "$H/metrics") || fail "scrape failed"
		b=$(sock_job "$1" "$2")
		sb=$(sock_slots)
		[ "$a" = "$b" ] && [ "$sa" = "$sb" ] || continue
		printf '%s\n' "$m" >"$T/scrape-$1.txt"
		promtool check metrics <"$T/scrape-$1.txt" >"$T/promtool-$1.txt" 2>&1 ||
			fail "$3: promtool check metrics: $(cat "$T/promtool-$1.txt")"
		mm=$("$TOOL" job "$1" "$2" <"$T/scrape-$1.txt")
		ms=[$("$TOOL" gauge vmferry_slots_in_use <"$T/scrape-$1.txt"),$("$TOOL" gauge vmferry_jobs_queued <"$T/scrape-$1.txt")]
		assert_eq "$mm" "$a" "$3: /metrics says what jobs --json says ($a)"
		assert_eq "$ms" "$sa" "$3: slots in use and queued as ping says ($sa)"
		return 0
	done
	fail "$3: no scrape between two equal socket answers in 100 tries"
}
metrics_equal mv web01 "during the migration"
metrics_equal bk bak01 "during the backup"
ok "promtool check metrics is clean on both scrapes"
s=$(cat "$T/scrape-bk.txt")
assert_match "$s" 'vmferry_jobs\{kind="migration",state="transferring"\} 1' "jobs by kind and state"
assert_match "$s" 'vmferry_store_commit_duration_seconds_count [1-9]' "store commit latency"
assert_match "$s" 'vmferry_instant_recoveries_running 0' "instant recoveries running: 0"
assert_match "$s" 'vm="q\\"uote\\\\back"' "a quote and a backslash in a VM name are escaped"
assert_match "$s" 'vm="<img src=x onerror=alert\(1\)>"' "markup in a VM name is a plain label value"
assert_eq "$("$TOOL" job names '<img src=x onerror=alert(1)>' <"$T/scrape-bk.txt" | jq -r '.[0]')" \
	"$(ctl --json jobs names | jq -r '.jobs[] | select(.vm == "<img src=x onerror=alert(1)>") | .state')" \
	"the markup-named job's state read back from the scrape"

# events: the watch stream as Server-Sent Events
curl -sN -H "$AUTH" "$H/api/v1/events?rule=mv" >"$T/events.txt" 2>/dev/null &
EV=$!
PIDS+=($EV)
sleep 3
kill $EV 2>/dev/null || true
head -n1 "$T/events.txt" | grep -q '^data: {"ok":true,"watching":true' && ok "/api/v1/events opens with the watch answer" ||
	fail "events: $(head -c 300 "$T/events.txt")"
grep -q '^data: {"event":"progress"' "$T/events.txt" && ok "/api/v1/events streams progress events" ||
	fail "no progress event in $(wc -l <"$T/events.txt") lines"
assert_eq "$(curl -s -o /dev/null -w '%{content_type}' -m 2 -H "$AUTH" "$H/api/v1/events" || true)" \
	"text/event-stream; charset=utf-8" "events are text/event-stream"

# --- changes: 401 / 403 / with the token ----------------------------------
before=$(ctl --json jobs mv | jq -r '.jobs[0].state')
assert_eq "$(hcode -X POST -d '{"rule":"mv"}' "$H/api/v1/stop")" 401 "POST stop without the token: 401"
assert_eq "$(hcode -X POST -H 'Authorization: Bearer not-the-token-at-all' -d '{"rule":"mv"}' "$H/api/v1/stop")" 403 \
	"POST stop with a wrong token: 403"
assert_eq "$(hcode -X POST -H 'Authorization: Basic dXNlcjpwYXNz' -d '{"rule":"mv"}' "$H/api/v1/stop")" 403 \
	"POST stop with another kind of credentials: 403"
assert_eq "$(hcode -X POST -d '{"rule":"bk"}' "$H/api/v1/delete")" 401 "POST delete without the token: 401"
sleep 0.5
# The copy may have reached ready meanwhile (a slow machine): what must not
# have happened is a stop.
after=$(ctl --json jobs mv | jq -r '.jobs[0].state')
if [ "$after" != stopped ] && ! grep -q 'migration/mv/web01: .* -> stopped' "$T/daemon.log"; then
	ok "the refused stop changed nothing ($before, now $after)"
else
	fail "a refused stop stopped the job ($before, now $after)"
fi
assert_match "$(ctl --json jobs bk | jq -r '.jobs[0].state')" '^(preparing|saving_config|querying_changes|checking_data|transferring|complete)$' \
	"the refused delete changed nothing"
assert_eq "$(hcode -H "$AUTH" "$H/api/v1/stop?rule=mv")" 405 "GET on an op that changes something: 405"
r=$(curl -s -X POST -H "$AUTH" -d '{"rule":"mv"}' "$H/api/v1/stop")
assert_match "$r" '"result":"done"' "POST stop with the token: done"
wait_job mv web01 stopped 30
r=$(curl -s -X POST -H "$AUTH" -d '{"rule":"mv","vm":"web01"}' "$H/api/v1/start")
assert_match "$r" '"ok":true' "POST start with the token"
r=$(curl -s -w ' %{http_code}' -X POST -H "$AUTH" -d '{"rule":"nope"}' "$H/api/v1/start" | tr -d '\n')
assert_match "$r" '^\{"ok":false,"error":"no rule named nope"\} 409$' "an op the engine refuses: 409 with the socket's answer"
r=$(curl -s -w ' %{http_code}' -X POST -H "$AUTH" -d '{"rule":"mv","bogus":1}' "$H/api/v1/start" | tr -d '\n')
assert_match "$r" 'does not take \\"bogus\\".* 400$' "a field the op does not take: 400 with the parser's message"
r=$(curl -s -w ' %{http_code}' -X POST -H "$AUTH" -d '{"rule":' "$H/api/v1/start" | tr -d '\n')
assert_match "$r" 'malformed JSON.* 400$' "malformed JSON: 400"

wait_job mv web01 ready 120
wait_job bk bak01 complete 120
ok "the migration reaches ready and the backup completes"
# /api/v1/jobs equals the socket's answer (nothing moves now)
a=$(hget "$H/api/v1/jobs" | jq -S .)
b=$(ctl --json jobs | jq -S .)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "/api/v1/jobs equals the socket's jobs answer" ||
	fail "/api/v1/jobs differs: $(diff <(echo "$a") <(echo "$b") | head -10)"
a=$(hget "$H/api/v1/log?rule=mv&vm=web01&limit=5" | jq -S .)
b=$(ctl --json log mv web01 | jq -S '.log |= .[-5:]')
assert_eq "$(jq -c '.log | length' <<<"$a")" 5 "GET /api/v1/log with a query: limit 5"
assert_eq "$(jq -c .log <<<"$a")" "$(jq -c .log <<<"$b")" "the log over HTTP equals the socket's"
stats=$(curl -s -X POST -H "$AUTH" "$H/api/v1/stats" | jq -c '.jobs[] | select(.vm == "bak01") | .successes')
assert_eq "$stats" 1 "POST /api/v1/stats: the backup's success"

# --- static files ---------------------------------------------------------
assert_eq "$(curl -s -o /dev/null -w '%{content_type}' "$H/")" "text/html; charset=utf-8" "/ is the dashboard's index.html"
assert_eq "$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "$H/chart.js")" "200 text/javascript; charset=utf-8" \
	"/chart.js is Debian's Chart.js"
cmp -s <(curl -s "$H/chart.js") /usr/share/javascript/chart.js/chart.min.js && ok "/chart.js is byte for byte chart.min.js" ||
	fail "/chart.js differs from /usr/share/javascript/chart.js/chart.min.js"
for p in '/../../../../etc/passwd' '/%2e%2e/%2e%2e/etc/passwd' '/..%2f..%2fetc/passwd' '/.hidden' '/dashboard/' \
	'/index.html/..' '//etc/passwd'; do
	r=$(curl -s --path-as-is -w ' %{http_code}' "$H$p")
	assert_nomatch "$r" 'root:' "$p does not leave the dashboard"
	assert_match "$r" ' (400|404)$' "$p: 400 or 404"
done
assert_eq "$(hcode "$H/api/v1/nosuchop")" 404 "an unknown op: 404"
assert_eq "$(hcode -H "$AUTH" "$H/api/v1/jobs?rule=mv&rule=bk")" 400 "a parameter twice: 400"

# --- hostile HTTP ---------------------------------------------------------
big=$(head -c 40000 /dev/zero | tr '\0' a)
r=$(hcode -H "X-Big: $big" "$H/api/v1/ping")
assert_match "$r" '^(400|413|431|000)$' "headers of 40 KB refused ($r)"
head -c $((200 * 1024)) /dev/zero | tr '\0' ' ' >"$T/body"
r=$(hcode -X POST -H "$AUTH" --data-binary @"$T/body" "$H/api/v1/stats")
assert_match "$r" '^(400|413|000)$' "a body of 200 KB refused ($r)"
ping_fast "after oversized requests"
for req in 'GARBAGE\r\n\r\n' 'GET\r\n\r\n' 'GET / HTTP/9.9\r\n\r\n' 'GET /\x01\x02 HTTP/1.1\r\nHost: x\r\n\r\n' \
	'POST /api/v1/stop HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n' \
	'GET /api/v1/ping HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n' \
	'BREW /pot HTTP/1.1\r\n\r\n' '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'; do
	r=$(printf "$req" | "$TOOL" raw "$PORT")
	assert_match "$r" '^(HTTP/1\.[01] (400|404|405|411|413|501) |closed)' "malformed request $(printf '%q' "$req" | head -c 40): $r"
done
ping_fast "after malformed requests"

"$TOOL" slow "$PORT" 8 >"$T/slow.txt" &
SLOWPID=$!
PIDS+=($SLOWPID)
sleep 2
ping_fast "while a client sends a byte a second"
assert_eq "$(hcode -H "$AUTH" -m 2 "$H/api/v1/ping")" 200 "HTTP answers others while a client sends a byte a second"
wait $SLOWPID || true

"$TOOL" idle "$PORT" 1000 15 >"$T/idle.txt" &
IDLEPID=$!
PIDS+=($IDLEPID)
wait_until 30 test -s "$T/idle.txt" || fail "the idle clients did not connect"
assert_eq "$(cat "$T/idle.txt")" 1000 "1,000 idle HTTP connections are taken"
ping_fast "with 1,000 idle HTTP connections"
assert_eq "$(hcode -H "$AUTH" -m 5 "$H/api/v1/ping")" 200 "HTTP answers beside 1,000 idle connections"
m=$(hget -m 5 "$H/metrics") && ok "a scrape beside 1,000 idle connections" || fail "no scrape beside the idle connections"
kill $IDLEPID 2>/dev/null || true
wait $IDLEPID 2>/dev/null || true
kill -0 "$DAEMON_PID" && ok "vmferryd is still running" || fail "vmferryd is gone"

# --- reload: a new address, then no token ---------------------------------
PORT2=$(free_ports 1)
sed -i "s/127.0.0.1:$PORT/127.0.0.1:$PORT2/" "$CONF/00-system.yaml"
kill -HUP "$DAEMON_PID"
wait_until 10 curl -s -o /dev/null "http://127.0.0.1:$PORT2/" || fail "SIGHUP did not rebind to $PORT2"
ok "SIGHUP with a new listen address rebinds ($PORT2)"
assert_eq "$(hcode -m 2 "$H/")" 000 "the old address no longer answers"
H=http://127.0.0.1:$PORT2
PORT=$PORT2
sed -i 's/, token_file: secrets\/http-token//' "$CONF/00-system.yaml"
kill -HUP "$DAEMON_PID"
wait_until 10 sh -c "[ \$(curl -s -o /dev/null -w '%{http_code}' $H/api/v1/ping) = 200 ]" ||
	fail "without a token file reads should be open on loopback"
ok "without a token file, GET /api/v1/ping needs no token on loopback"
assert_eq "$(hcode -X POST -H "$AUTH" -d '{"rule":"mv"}' "$H/api/v1/stop")" 403 "without a token file, POST stop: 403"
assert_eq "$(ctl --json jobs mv | jq -r '.jobs[0].state')" ready "and the job stays ready"
assert_eq "$(hcode -H 'Host: attacker.example' "$H/api/v1/jobs")" 403 "without a token file, a Host that is no loopback name: 403"
assert_eq "$(hcode "$H/metrics")" 200 "without a token file, /metrics is open on loopback"

# --- config check ---------------------------------------------------------
sed -i "s/127.0.0.1:$PORT/0.0.0.0:$PORT/" "$CONF/00-system.yaml"
r=$("$BIN/vmferryd" -n -c "$CONF" 2>&1 || true)
assert_match "$r" '00-system.yaml:[0-9]+:[0-9]+: listen: 0.0.0.0:[0-9]+ is beyond loopback; give a token_file' \
	"vmferryd -n refuses an address beyond loopback without a token file"
stop_daemon

# --- out of descriptors: accepting pauses instead of spinning --------------
PORT3=$(free_ports 1)
mkdir -p "$T/fd/conf"
printf 'kind: system\nhttp: { listen: "127.0.0.1:%s" }\n' "$PORT3" >"$T/fd/conf/system.yaml"
(
	ulimit -Sn 80
	ulimit -Hn 80
	exec "$BIN/vmferryd" -c "$T/fd/conf" -d "$T/fd/state" -s "$T/fd/sock"
) >"$T/fd.log" 2>&1 &
FDPID=$!
PIDS+=($FDPID)
wait_until 20 "$BIN/vmferryctl" -s "$T/fd/sock" ping || fail "the vmferryd limited to 80 descriptors did not start"
"$TOOL" idle "$PORT3" 150 6 >"$T/fd-idle.txt" &
FDIDLE=$!
wait_until 20 test -s "$T/fd-idle.txt" || fail "the idle clients did not connect"
c0=$(awk '{ print $14 + $15 }' "/proc/$FDPID/stat")
sleep 2
c1=$(awk '{ print $14 + $15 }' "/proc/$FDPID/stat")
[ $((c1 - c0)) -le 20 ] && ok "out of descriptors with 150 connections, vmferryd does not spin ($((c1 - c0)) ticks in 2 s)" ||
	fail "out of descriptors, vmferryd took $((c1 - c0)) ticks of CPU in 2 s"
grep -q 'http: accept failed (Too many open files); new connections wait' "$T/fd.log" && ok "and says so once" ||
	fail "no accept failure in the log: $(tail -3 "$T/fd.log")"
"$BIN/vmferryctl" -s "$T/fd/sock" ping >/dev/null && ok "the status socket answers meanwhile" || fail "no ping meanwhile"
wait $FDIDLE || true
wait_until 10 sh -c "[ \$(curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:$PORT3/api/v1/ping) = 200 ]" ||
	fail "HTTP does not answer once the connections are gone"
ok "HTTP answers again once the connections are gone"
kill -TERM $FDPID
wait $FDPID || true
cat "$T/fd.log" >>"$T/daemon.log"

# Under ASan+UBSan (build-asan) a report would be in the daemon's log.
{ grep -E 'AddressSanitizer|LeakSanitizer|runtime error' "$T/daemon.log" || true; } | head -5 | sed 's/^/# /'
grep -qE 'AddressSanitizer|LeakSanitizer|runtime error' "$T/daemon.log" && fail "a sanitizer report in the daemon's log" ||
	ok "no sanitizer report in the daemon's log"
echo "1..$NTEST"
