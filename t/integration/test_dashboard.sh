#!/usr/bin/env bash
# The dashboard in a real browser (issue #17, SPEC §13): Debian's chromium
# driven by playwright-core (t/browser/, installed by tools/setup from its
# lock file) against the real daemon's HTTP listener, during a real
# migration between two test peers, with a backup rule beside it whose VM
# is named <img src=x onerror=alert(1)>.  t/browser/dashboard.mjs checks:
# the page loads and its event stream connects; the running job's progress
# bar moves; its state labels (Chinese and English) follow the migration's
# state machine to 迁移就绪; its traffic graph shows what moved; 开始迁移
# without the token is refused (401) and changes nothing, with the token
# it takes the job to 完成; a replication rule's restore point is listed and
# its 临时切换 and 回切 buttons work; a backup rule's 立即执行 makes a point
# that the page lists; the hostile name is shown as text and runs no
# script; the statistics charts count what `vmferryctl stats` counts and
# viewing them clears the unviewed errors; the page fits 1366x768 and a
# phone.  Screenshots go to build/Testing/artifacts/ (the README's is one).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate_lib.sh"

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || skip_test "no $CHROMIUM (tools/setup installs Debian's chromium)"
[ -d "$SRC/t/browser/node_modules/playwright-core" ] || skip_test "no playwright-core in t/browser/node_modules (tools/setup runs npm ci there)"
command -v node >/dev/null || skip_test "no node"

MiB=1048576
XSS='<img src=x onerror=alert(1)>'
cat >"$T/fixture.json" <<JSON
{"datacenters":[{"name":"DC0","hosts":["H0"],"datastores":["ds0"]}],
 "vms":[{"name":"web01","host":"H0","power":"on","disks":[{"capacity":$((40 * MiB + 4096)),"seed":81,"allocated":0.9}]},
        {"name":"rp01","host":"H0","power":"on","disks":[{"capacity":$((3 * MiB + 512)),"seed":83,"allocated":0.7}]},
        {"name":"bk01","host":"H0","power":"on","disks":[{"capacity":$((5 * MiB + 4096)),"seed":84,"allocated":0.6}]},
        {"name":$(jq -n --arg n "$XSS" '$n'),"host":"H0","power":"on","disks":[{"capacity":$((2 * MiB)),"seed":82}]}]}
JSON
mig_start_peers "$T/fixture.json"
PORT=$(free_ports 1)
TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
mig_config "transfer_buffer: 1MiB
host_buffer_cap: 8MiB
http: { listen: \"127.0.0.1:$PORT\", token_file: secrets/http-token }"
printf '%s\n' "$TOKEN" >"$CONF/secrets/http-token"
chmod 600 "$CONF/secrets/http-token"
# 40 MiB at 3 MiB/s: the browser watches a dozen seconds of transfer.
mig_rule dash web01 "fast_transfer: true" '[ { days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00", limit: 3MiB/s } ]'
# A VM the source has not got: its job fails, one unviewed error.
mig_rule ghost nosuch01 "fast_transfer: true"
# A replication rule (its first cycle runs at once) and a backup rule
# whose point the page's 立即执行 makes.
rep_rule rp rp01 "fast_transfer: true, auto_sync: false" 2
cat >"$CONF/20-bk.yaml" <<YAML
kind: backup
name: bk
source: { platform: src, vms: [bk01] }
node: local
options: { fast_transfer: true }
schedule: { once: "2099-01-01 00:00" }
YAML
cat >"$CONF/20-xss.yaml" <<YAML
kind: backup
name: xss
source: { platform: src, vms: [ $(jq -n --arg n "$XSS" '$n') ] }
node: local
schedule: { once: "2099-01-01 00:00" }
YAML
start_daemon "$CONF"
wait_until 30 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json jobs ghost | jq -e '.jobs[0].state == \"failed\"'" ||
	fail "the job of a VM the source has not got did not fail: $(ctl jobs ghost)"
wait_until 20 curl -sf "http://127.0.0.1:$PORT/" || fail "the HTTP listener does not answer: $(tail -5 "$T/daemon.log")"
assert_match "$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "http://127.0.0.1:$PORT/chart.js")" "^200 .*javascript" \
	"/chart.js is served (Debian's libjs-chart.js)"
wait_until 30 sh -c "'$BIN/vmferryctl' -s '$SOCK' --json jobs dash | jq -e '.jobs[0].state == \"transferring\" or .jobs[0].state == \"querying_changes\" or .jobs[0].state == \"queued\" or .jobs[0].state == \"creating_vm\" or .jobs[0].state == \"fetching_config\" or .jobs[0].state == \"starting\"'" ||
	fail "the migration is not under way: $(ctl jobs)"

ART="$BIN/Testing/artifacts"
mkdir -p "$ART"
out=$(cd "$SRC/t/browser" && URL="http://127.0.0.1:$PORT/" TOKEN="$TOKEN" MIG_RULE=dash MIG_VM=web01 XSS_RULE=xss XSS_VM="$XSS" \
	REP_RULE=rp REP_VM=rp01 BAK_RULE=bk BAK_VM=bk01 \
	CTL="'$BIN/vmferryctl' -s '$SOCK'" SHOT="$ART/dashboard.png" CHROMIUM="$CHROMIUM" \
	timeout 300 node dashboard.mjs 2>"$T/browser.err") || true
# The browser's TAP lines, renumbered into this test's.
while IFS= read -r l; do
	case "$l" in
	"ok "*) ok "${l#ok * - }" ;;
	"not ok "*) fail "${l#not ok * - }" ;;
	esac
done <<<"$out"
[ "$(grep -c '^ok ' <<<"$out")" -ge 20 ] && [ "$(grep -c '^not ok ' <<<"$out")" = 0 ] ||
	fail "the browser run ended early: $(tail -5 "$T/browser.err")"
[ -s "$ART/dashboard.png" ] && ok "a screenshot of the dashboard: $ART/dashboard.png" || fail "no screenshot"
assert_eq "$(dst_sha web01 0)" "$(src_sha web01 0)" "the migration the browser finished: the target's disk equals the source's"
assert_eq "$(ctl --json show bk bk01 | jq '[.details.points[] | select(.state == "complete")] | length')" 1 \
	"the backup point the page's 立即执行 made is in the repository (vmferryctl show)"
assert_eq "$(ctl --json stats ghost | jq '.rules[0].failures, .rules[0].unviewed_errors' | paste -sd' ')" "1 0" \
	"the page's viewing of the statistics cleared ghost's unviewed error (vmferryctl stats)"
stop_daemon
echo "1..$NTEST"
