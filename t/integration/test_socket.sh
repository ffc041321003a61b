#!/usr/bin/env bash
# Hostile and heavy status socket use never disturbs the engine:
# malformed and oversized requests get error answers, many clients are
# served at once, a watcher that never reads does not block anyone.
. "$(dirname "$0")/lib.sh"

make_config "$T/conf" web01 web02
start_daemon "$T/conf"

raw() { printf '%s\n' "$1" | socat -t 2 - "UNIX-CONNECT:$SOCK"; }

assert_match "$(raw '{"op":')" '"ok":false,"error":"malformed JSON' "malformed JSON gets an error answer"
assert_match "$(raw '[1,2]')" 'must be a JSON object' "a non-object gets an error answer"
assert_match "$(raw '{"op":"explode"}')" 'unknown op' "an unknown op gets an error answer"
assert_match "$(raw '{"op":"jobs","vm":7}')" 'must be a non-empty string' "a wrong type gets an error answer"
assert_match "$(raw '{"op":"log","rule":"mig"}')" 'needs \\"vm\\"' "a missing field is named"
assert_match "$(raw '{"op":"jobs","id":"abc"}')" '"id":"abc"' "a request id is echoed"

big=$(head -c 70000 /dev/zero | tr '\0' 'x')
assert_match "$(raw "$big")" 'request line too long' "an oversized request gets an error and is closed"
# The daemon answers and closes once the limit is passed, while the rest
# is still being sent: the sender must read the answer after a refused write.
nonl=$(/usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
try:
    s.sendall(b"x" * 70000)
except (BrokenPipeError, ConnectionResetError):
    pass
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
sys.stdout.write(out.decode())' "$SOCK")
assert_match "$nonl" 'too long' "an oversized line without newline is refused too"
ctl ping >/dev/null && ok "the engine still answers after hostile input" || fail "engine gone"

# Pipelined requests on one connection are all answered, in order.
n=$( (for i in $(seq 1 300); do echo '{"op":"ping"}'; done) | socat -t 5 - "UNIX-CONNECT:$SOCK" | grep -c '"ok":true')
assert_eq "$n" 300 "300 pipelined requests get 300 answers"

# Many clients at once.
pids=()
for i in $(seq 1 200); do
	(ctl --json jobs >"$T/c$i.out" 2>&1) &
	pids+=($!)
done
bad=0
for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
good=$(cat "$T"/c*.out | jq -s '[.[] | select(.ok)] | length')
assert_eq "$bad/$good" "0/200" "200 concurrent clients are all served"

# A watcher that never reads while state changes flow (socat -u only
# writes to the socket).
( printf '{"op":"watch"}\n'; sleep 30 ) | socat -u - "UNIX-CONNECT:$SOCK" &
PIDS+=($!)
sleep 0.5
for i in $(seq 1 100); do
	ctl stop mig >/dev/null
	ctl start mig >/dev/null
done
timeout 20 "$BIN/vmferryctl" -s "$SOCK" ping >/dev/null && ok "a watcher that never reads does not block the engine" ||
	fail "engine blocked"

# A live watcher sees state events.
ctl --json watch mig >"$T/watch.out" &
wpid=$!
sleep 0.5
ctl stop mig web01 >/dev/null
sleep 0.5
kill "$wpid" 2>/dev/null || true
assert_match "$(cat "$T/watch.out")" '"event":"state".*"state":"stopped"' "watch streams state changes"
