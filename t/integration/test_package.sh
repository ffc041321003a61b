#!/usr/bin/env bash
# The installable service (issue #17; SPEC §13, deployment;
# docs/SERVICE.md): the .deb that tools/package builds is installed on
# this machine with dpkg, its unit passes `systemd-analyze verify`, and
# vmferryd is started the way the unit starts it (there is no systemd as
# PID 1 here): its user, group, umask, state and runtime directories, its
# ExecStart= and ExecReload= read from the installed unit.  The installed
# vmferryctl talks to it, an operator in the group vmferry may and anyone
# else may not, a backup and a migration between test peers complete, and
# everything the daemon did (strace) keeps within the unit's sandbox
# (t/tools/sandbox_check.py).  `dpkg -r` leaves /etc/vmferry and
# /var/lib/vmferry; `dpkg -P` removes the conffiles and the user.
#
# Needs root and dpkg-deb (else skipped); one run at a time per machine.
# Whatever happens, the package is purged and what the test made removed.
# VMFERRY_DEB=FILE tests that package instead of building one.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

[ "$(id -u)" = 0 ] || skip_test "not root (dpkg -i needs it)"
command -v dpkg-deb >/dev/null || skip_test "dpkg-deb not found (not a Debian machine)"
! grep -qs '^VMFERRY_SANITIZE:BOOL=ON' "$BIN/CMakeCache.txt" ||
	skip_test "a sanitizer build: the package is built by tools/package alone, the normal build's run tests it"
for c in systemd-analyze strace setpriv python3 readelf; do
	command -v $c >/dev/null || fail "$c is missing (tools/setup installs it)"
done
TRACER= TRACE_DIR=
# pkg_restore: the machine as it was before the test: no daemon of its,
# no package, no /etc/vmferry, /var/lib/vmferry, /run/vmferry, no user.
pkg_restore() {
	local p
	# The daemon first: userdel refuses a user with processes.
	[ -z "$TRACER" ] || DAEMON_PID="$DAEMON_PID $(pgrep -P "$TRACER" || true)"
	for p in $DAEMON_PID $TRACER; do
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	for p in $DAEMON_PID; do
		wait_until 10 eval "! kill -0 $p" || true
	done
	dpkg -P vmferry >/dev/null 2>&1 || true
	rm -rf /etc/vmferry /var/lib/vmferry /run/vmferry ${TRACE_DIR:+"$TRACE_DIR"}
	! getent passwd vmferry >/dev/null || userdel vmferry || true
	! getent group vmferry >/dev/null || groupdel vmferry || true
	rm -f "$OWNED"
}
exec 9>/run/lock/vmferry-test-package.lock
flock -w 600 9 || fail "another test_package run holds /run/lock/vmferry-test-package.lock"
# What a run that was killed (no trap) left: this file says it is ours.
OWNED=/var/tmp/vmferry-test-package.owned
if [ -e "$OWNED" ]; then
	# Its tracer and daemon, if they still run as vmferry.
	for p in $(cat "$OWNED"); do
		[ "$(ps -o user= -p "$p" 2>/dev/null)" != vmferry ] || DAEMON_PID="$DAEMON_PID $p"
	done
	pkg_restore
fi
# A vmferry of the machine's own is not ours to touch.
if dpkg-query -W -f='${db:Status-Status}' vmferry 2>/dev/null | grep -qv '^not-installed$'; then
	skip_test "the package vmferry is on this machine already"
fi
for p in /etc/vmferry /var/lib/vmferry /run/vmferry; do
	[ ! -e $p ] || skip_test "$p exists: this machine has a vmferry of its own"
done
! getent passwd vmferry >/dev/null && ! getent group vmferry >/dev/null ||
	skip_test "this machine has a user or group vmferry already"
touch "$OWNED"
trap 'rc=$?; pkg_restore; it_cleanup $rc; exit $rc' EXIT

ctl() { /usr/bin/vmferryctl "$@"; }
VERSION=$(sed -n 's/^project(vmferry VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")

# ---- the package ----
started=$SECONDS
if [ -n "${VMFERRY_DEB:-}" ]; then
	deb=$VMFERRY_DEB
else
	deb=$("$SRC/tools/package" -o "$T" 2>"$T/package.log") || fail "tools/package: $(tail -5 "$T/package.log")"
fi
ok "tools/package built $(basename "$deb") in $((SECONDS - started)) s"
assert_eq "$(dpkg-deb -f "$deb" Package Version Architecture | tr '\n' ' ')" \
	"Package: vmferry Version: $VERSION Architecture: $(dpkg --print-architecture) " "the package's name, the project's version, this architecture"
depends=$(dpkg-deb -f "$deb" Depends)
dpkg-deb -x "$deb" "$T/deb"
dpkg-deb -e "$deb" "$T/deb/DEBIAN"
# Every library the programs link directly comes from a package in Depends.
missing=
for so in $(readelf -d "$T/deb/usr/sbin/vmferryd" "$T/deb/usr/bin/vmferryctl" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u); do
	lib=$(ldconfig -p | awk -v so="$so" '$1 == so && !f { print $NF; f = 1 }')
	real=$(readlink -f "$lib")
	pkg=
	for f in "$lib" "$real" "${real#/usr}"; do # merged /usr: dpkg knows one of the names
		pkg=$(dpkg -S "$f" 2>/dev/null | head -1 | cut -d: -f1) && [ -n "$pkg" ] && break
	done
	grep -Eq "(^|, )$pkg( |,|$)" <<<"$depends" || missing="$missing $so($pkg)"
done
assert_eq "$missing" "" "Depends names the package of every library linked ($depends)"
assert_match "$depends" "(^|, )adduser(,|$)" "Depends names adduser (postinst makes the user)"
assert_match "$depends" "(^|, )libjs-chart.js(,|$)" "Depends names libjs-chart.js (the dashboard's /chart.js)"
assert_eq "$(cat "$T/deb/DEBIAN/conffiles" | tr '\n' ' ')" "/etc/vmferry/README /etc/vmferry/node.yaml /etc/vmferry/system.yaml " \
	"the conffiles are /etc/vmferry's files"

# ---- installed ----
dpkg -i "$deb" >"$T/dpkg.log" 2>&1 || fail "dpkg -i: $(tail -5 "$T/dpkg.log")"
assert_eq "$(dpkg-query -W -f='${db:Status-Status}' vmferry)" installed "dpkg -i installs it"
UNIT=$(dpkg -L vmferry | grep '/systemd/system/vmferryd.service$')
for f in /usr/sbin/vmferryd /usr/bin/vmferryctl; do [ -x $f ] || fail "$f is not installed"; done
for f in /usr/share/vmferry/examples/migration.yaml /usr/share/vmferry/systemd/hotadd.conf \
	/usr/share/vmferry/systemd/lan_free.conf /usr/share/doc/vmferry/SERVICE.md /usr/share/doc/vmferry/CONFIG.md \
	/etc/vmferry/README /etc/vmferry/system.yaml /etc/vmferry/node.yaml; do
	[ -f $f ] || fail "$f is not installed"
done
[ -d /usr/share/vmferry/dashboard ] || fail "no /usr/share/vmferry/dashboard"
ok "binaries, unit ($UNIT), examples, drop-ins, docs and /etc/vmferry in their places"
pw=$(getent passwd vmferry) || fail "postinst made no user vmferry"
IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
[ "$uid" -lt 1000 ] && [ "$(getent group vmferry | cut -d: -f3)" = "$gid" ] && [ "$shell" = /usr/sbin/nologin ] &&
	ok "postinst made the system user vmferry (uid $uid, group vmferry, home $home, no login)" ||
	fail "the user vmferry: $(getent passwd vmferry), group $(getent group vmferry)"
dpkg -i "$deb" >"$T/dpkg.log" 2>&1 || fail "dpkg -i again: $(tail -5 "$T/dpkg.log")"
assert_eq "$(id -u vmferry)" "$uid" "installing again keeps the user"
assert_match "$(/usr/sbin/vmferryd -n -c /usr/share/vmferry/examples 2>&1)" '^configuration OK' \
	"the installed examples are a valid configuration"

# ---- the unit ----
out=$(systemd-analyze verify "$UNIT" 2>&1) && [ -z "$out" ] && ok "systemd-analyze verify: the unit is clean" ||
	fail "systemd-analyze verify $UNIT: $out"
mkdir -p "$T/units/vmferryd.service.d"
cp "$UNIT" "$T/units/"
cp /usr/share/vmferry/systemd/*.conf "$T/units/vmferryd.service.d/"
out=$(systemd-analyze verify "$T/units/vmferryd.service" 2>&1) && [ -z "$out" ] &&
	ok "systemd-analyze verify: clean with the hot-add and lan_free drop-ins too" || fail "with the drop-ins: $out"
out=$(systemd-analyze security --offline=yes --threshold=20 "$UNIT" 2>&1) &&
	ok "systemd-analyze security: $(grep -o 'exposure level.*' <<<"$out")" ||
	fail "systemd-analyze security above 2.0: $(tail -1 <<<"$out")"
unit() { sed -n "s/^$1=//p" "$UNIT" | tail -1; }
assert_eq "$(unit ExecReload)" '/bin/kill -HUP $MAINPID' "ExecReload= sends SIGHUP"
assert_eq "$(unit User):$(unit Group)" vmferry:vmferry "the unit runs as vmferry:vmferry"

# ---- started as the unit would ----
# systemd makes StateDirectory= and RuntimeDirectory= under /var/lib and
# /run, owned by the unit's user, with their modes; runs ExecStart= in /
# as User= with its groups, the UMask=, no new privileges, no capabilities.
user=$(unit User) group=$(unit Group)
install -d -m "$(unit StateDirectoryMode)" -o "$user" -g "$group" "/var/lib/$(unit StateDirectory)"
install -d -m "$(unit RuntimeDirectoryMode)" -o "$user" -g "$group" "/run/$(unit RuntimeDirectory)"
read -ra exec_start <<<"$(unit ExecStart)"
# strace runs as the user too (root would see more), so its log is where
# that user may write.
TRACE_DIR=$(mktemp -d /tmp/vmferry-trace.XXXXXX)
chown "$user" "$TRACE_DIR"
(cd / && umask "$(unit UMask)" && exec setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs \
	--inh-caps=-all --bounding-set=-all -- strace -f -qq -y -o "$TRACE_DIR/strace.log" -- "${exec_start[@]}") \
	>"$T/daemon.log" 2>&1 &
TRACER=$!
wait_until 20 pgrep -P "$TRACER" -x vmferryd || fail "vmferryd did not start: $(tail -5 "$T/daemon.log")"
DAEMON_PID=$(pgrep -P "$TRACER" -x vmferryd)
echo "$TRACER $DAEMON_PID" >"$OWNED"
wait_until 20 ctl ping || fail "vmferryd does not answer on vmferryctl's default socket"
assert_match "$(ctl ping)" "^vmferryd $VERSION up" "the installed vmferryctl pings it on its default socket"
assert_match "$(ctl jobs)" "0 active, 0 pending" "vmferryctl jobs: none yet"
assert_eq "$(ps -o user= -p "$DAEMON_PID")" vmferry "the daemon runs as vmferry"
assert_eq "$(stat -c '%A %U %G' /run/vmferry/vmferry.sock /run/vmferry /var/lib/vmferry /var/lib/vmferry/store | tr '\n' ' ')" \
	"srw-rw---- vmferry vmferry drwxr-x--- vmferry vmferry drwx------ vmferry vmferry drwx------ vmferry vmferry " \
	"socket 0660 in /run/vmferry 0750, state 0700: all vmferry's"
nobody=$(id -u nobody) vgid=$(getent group vmferry | cut -d: -f3)
setpriv --reuid="$nobody" --regid="$(id -g nobody)" --groups="$vgid" /usr/bin/vmferryctl ping >/dev/null 2>"$T/op.err" &&
	ok "an operator in the group vmferry may use vmferryctl" || fail "an operator is refused: $(cat "$T/op.err")"
out=$(setpriv --reuid="$nobody" --regid="$(id -g nobody)" --clear-groups /usr/bin/vmferryctl ping 2>&1) &&
	fail "a user outside the group vmferry got in: $out" || assert_match "$out" "Permission denied" "anyone else may not"

# Two platforms, a backup and a migration rule, put in /etc/vmferry as
# its README says; the reload as ExecReload= does it.
MiB=1048576
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"bak01","host":"H0","power":"on","disks":[{"capacity":$((4 * MiB)),"seed":91,"allocated":0.5}]},
        {"name":"mig01","host":"H0","power":"on","disks":[{"capacity":$((3 * MiB + 4096)),"seed":92,"allocated":0.6}]}]}
JSON
mig_start_peers "$T/fixture.json"
install -d -m 0700 -o vmferry -g vmferry /etc/vmferry/secrets
echo pass | install -m 0400 -o vmferry -g vmferry /dev/stdin /etc/vmferry/secrets/vc
{
	mig_platform src "$S_URL" "$S_THUMB" vc
	echo ---
	mig_platform dst "$D_URL" "$D_THUMB" vc
} >/etc/vmferry/platforms.yaml
cat >/etc/vmferry/backup.yaml <<'YAML'
kind: backup
name: bak
source: { platform: src, vms: [bak01] }
node: local
retention: 2
schedule: { once: "2099-01-01 00:00" }
YAML
CONF=/etc/vmferry mig_rule mig mig01 "fast_transfer: true, auto_migrate: true"
# The HTTP listener on loopback, read-only (no token file).
HPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'http: { listen: "127.0.0.1:%s" }\n' "$HPORT" >>/etc/vmferry/system.yaml
reload=$(unit ExecReload)
${reload//\$MAINPID/$DAEMON_PID}
wait_until 10 grep -q 'reloaded (SIGHUP): 2 rules, 0 errors' "$T/daemon.log" &&
	ok "ExecReload= reloads: the rules are in" || fail "no reload: $(tail -3 "$T/daemon.log")"
wait_until 10 curl -sf -o /dev/null "http://127.0.0.1:$HPORT/" || fail "no HTTP listener: $(grep http: "$T/daemon.log" | tail -3)"
cmp -s <(curl -sf "http://127.0.0.1:$HPORT/") /usr/share/vmferry/dashboard/index.html &&
	ok "the service serves the installed dashboard" || fail "/ is not /usr/share/vmferry/dashboard/index.html"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HPORT/chart.js")" 200 "and Chart.js from libjs-chart.js"
curl -sf "http://127.0.0.1:$HPORT/metrics" | promtool check metrics >"$T/promtool.txt" 2>&1 &&
	ok "its /metrics pass promtool check metrics" || fail "promtool: $(head -3 "$T/promtool.txt")"
# state_in RULE REGEX: the rule's job is in a state matching REGEX.
state_in() { ctl --json jobs "$1" | jq -e --arg re "^($2)\$" '.jobs[0].state | test($re)' >/dev/null; }
ended="complete|failed|invalid|stopped"
wait_until 30 state_in bak idle || fail "the backup job is not idle: $(ctl jobs)"
ctl run bak bak01 --mode full >/dev/null
wait_until 120 state_in bak "$ended" && state_in bak complete || fail "the backup did not complete: $(ctl jobs)"
assert_match "$(ctl points bak bak01)" "complete" "a backup of a peer's VM completes: a point in the repository"
wait_until 120 state_in mig "$ended" && state_in mig complete || fail "the migration did not complete: $(ctl jobs)"
assert_eq "$(dst_sha mig01 0)" "$(src_sha mig01 0)" "a migration completes: the target's disk equals the source's"
bad=$(find /var/lib/vmferry ! -user vmferry -o -perm /077 | head -3)
assert_eq "$bad" "" "everything under /var/lib/vmferry is vmferry's alone"

# SIGTERM, as systemctl stop sends it: commit, exit 0.
kill -TERM "$DAEMON_PID"
st=0
wait "$TRACER" || st=$?
TRACER= DAEMON_PID=
assert_eq "$st" 0 "SIGTERM: vmferryd exits 0"
assert_match "$(tail -1 "$T/daemon.log")" "stopped" "it logged its stop"
out=$(python3 "$SRC/t/tools/sandbox_check.py" "$UNIT" "$TRACE_DIR/strace.log") &&
	ok "within the unit's sandbox: $(tail -1 <<<"$out")" || fail "outside the unit's sandbox: $out"
assert_match "$(tail -1 <<<"$out")" "families AF_INET AF_UNIX, in ([2-9]|[1-9][0-9]+) processes" \
	"the trace followed the daemon's threads, saw the socket and the peers' connections"

# ---- removed, purged ----
dpkg -r vmferry >"$T/dpkg.log" 2>&1 || fail "dpkg -r: $(tail -5 "$T/dpkg.log")"
assert_eq "$(dpkg-query -W -f='${db:Status-Status}' vmferry)" config-files "dpkg -r removes it"
for f in /usr/sbin/vmferryd /usr/bin/vmferryctl "$UNIT" /usr/share/vmferry; do
	[ ! -e "$f" ] || fail "$f is left after dpkg -r"
done
ok "the binaries, the unit and /usr/share/vmferry are gone"
[ -f /etc/vmferry/system.yaml ] && [ -f /etc/vmferry/20-mig.yaml ] && [ -f /etc/vmferry/secrets/vc ] &&
	ok "/etc/vmferry stays (conffiles and the operator's files)" || fail "/etc/vmferry: $(ls -R /etc/vmferry 2>&1)"
[ -f /var/lib/vmferry/store/data.mdb ] && [ -d /var/lib/vmferry/repo ] && ok "/var/lib/vmferry stays (state, repository)" ||
	fail "/var/lib/vmferry: $(ls /var/lib/vmferry 2>&1)"
getent passwd vmferry >/dev/null && ok "the user vmferry stays until purge" || fail "the user went with dpkg -r"
dpkg -P vmferry >"$T/dpkg.log" 2>&1 || fail "dpkg -P: $(tail -5 "$T/dpkg.log")"
assert_eq "$(dpkg-query -W -f='${db:Status-Status}' vmferry 2>/dev/null || echo not-installed)" not-installed "dpkg -P purges it"
assert_eq "$(cd /etc/vmferry && ls -A | tr '\n' ' ')" "20-mig.yaml backup.yaml platforms.yaml secrets " \
	"purge removes the conffiles, not the operator's files"
! getent passwd vmferry >/dev/null && ! getent group vmferry >/dev/null && ok "purge removes the user and group vmferry" ||
	fail "after purge: $(getent passwd vmferry) $(getent group vmferry)"
[ -d /var/lib/vmferry/repo ] && grep -q "/var/lib/vmferry is kept" "$T/dpkg.log" &&
	ok "purge keeps /var/lib/vmferry (it may hold backups) and says so" || fail "after purge: $(cat "$T/dpkg.log")"
echo "# $((SECONDS - started)) s"
