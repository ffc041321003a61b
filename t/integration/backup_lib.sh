# Helpers of the backup tests (sourced after lib.sh and migrate_lib.sh).
REPO_READ="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)/repo_read.py"
/usr/bin/python3 -c "import zstandard" 2>/dev/null || skip_test "python3-zstandard is not installed"

# bak_rule NAME "VM..." OPTIONS [RETENTION] [EXTRA_LINES]: a backup rule
# that runs only when asked (its one-off schedule is far away).
bak_rule() {
	{
		echo "kind: backup"
		echo "name: $1"
		echo "source: { platform: ${MIG_SRC:-src}, vms: [$(echo $2 | sed 's/ /, /g')] }"
		echo "node: local"
		echo "options: { $3 }"
		echo "retention: ${4:-7}"
		echo 'schedule: { once: "2099-01-01 00:00" }'
		[ -z "${5:-}" ] || printf '%s\n' "$5"
	} >"$CONF/.20-$1.yaml.tmp"
	mv "$CONF/.20-$1.yaml.tmp" "$CONF/20-$1.yaml"
}

# bak_first_full RULE VM NDISKS: the daemon started, a first full backup
# of VM made and checked; $want holds the source's disk hashes at it.
bak_first_full() {
	start_daemon "$CONF"
	wait_job "$1" "$2" idle 30
	ctl run "$1" "$2" --mode full >/dev/null
	wait_job "$1" "$2" complete 120
	want=$(src_hashes "$2" "$3")
	ok "point 1 backed up"
}

# The repository the helpers read: the node's (STATE_DIR/repo) unless
# BAK_REPO_DIR names another.
BAK_REPO() { echo "${BAK_REPO_DIR:-$STATE/repo}"; }

# The complete points of RULE/VM as the independent reader lists them.
repo_points() { "$REPO_READ" "${3:-$(BAK_REPO)}" points "$1" "$2" | awk -F/ "{print \$3}" | sort -n | paste -sd, -; }

# repo_sha RULE VM SEQ DISK: SHA-256 of a disk of a point, read back by
# the independent reader.
repo_sha() {
	local out="$T/restored.img"
	"$REPO_READ" "$(BAK_REPO)" image "$1" "$2" "$3" "$4" "$out" || { echo "unreadable"; return; }
	sha256sum "$out" | cut -d' ' -f1
	rm -f "$out"
}

# bak_point_equal RULE VM SEQ NDISKS WHAT: every disk of the point equals
# the source's disk now (call before the guest writes again).
bak_point_equal() {
	local d want got
	for ((d = 0; d < $4; d++)); do
		want=$(src_sha "$2" "$d")
		got=$(repo_sha "$1" "$2" "$3" "$d")
		assert_eq "$got" "$want" "$5: point $3 disk $d read back by repo_read.py equals the source"
	done
}

# Bytes in the repository's chunk files.
repo_chunk_bytes() { du -sb "$(BAK_REPO)/chunks" | cut -f1; }

# The chunk files in a repository (default BAK_REPO): their ids, sorted,
# one a line; with SIZES=1 "id size".
repo_chunk_files() {
	find "${1:-$(BAK_REPO)}/chunks" -type f -printf "%f${SIZES:+ %s}\n" | sort
}
# The distinct chunk ids that complete points name (repo_read.py chunks):
# repo_chunk_refs REPO [RULE [VM [SEQ]]].
repo_chunk_refs() { local r=$1; shift; "$REPO_READ" "$r" chunks "$@"; }
