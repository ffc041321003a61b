#!/usr/bin/env bash
# sandbox_check.py (a unit's sandbox against what a process did, from an
# strace log: test_package.sh trusts it) passes a log that keeps to the
# unit and names every kind of violation in one that does not: one line
# per option, each of them caught.  Skips (77) without systemd-analyze
# (the package systemd, which tools/setup installs).
set -euo pipefail

: "${VMFERRY_SRC:?}"
check="$VMFERRY_SRC/t/tools/sandbox_check.py"
if ! command -v systemd-analyze >/dev/null; then
	echo "SKIP: systemd-analyze not found (apt-get install systemd)"
	exit 77
fi
dir=$(mktemp -d /tmp/vmferry-sandbox.XXXXXX)
trap 'rm -rf "$dir"' EXIT
pass=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
die() { echo "FAIL: $*" >&2; echo "$pass passed, 1 failed"; exit 1; }

cat >"$dir/u.service" <<'UNIT'
[Unit]
Description=ProtectSystem=no here is not read: only [Service] counts
[Service]
ExecStart=/usr/sbin/vmferryd
StateDirectory=vmferry
RuntimeDirectory=vmferry
ProtectSystem=strict
ReadWritePaths=-/srv/rw
PrivateTmp=yes
ProtectHome=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
MemoryDenyWriteExecute=yes
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
UNIT

# What the daemon does, within the sandbox: the state and runtime
# directories (by dirfd too), /tmp, a ReadWritePaths= path, reads of /etc,
# the pseudo devices, its own /proc entries, threads, executable mappings
# of libraries, a TCP socket, strace's split lines, a `mkdir -p` walk from
# / (EEXIST comes before a read-only mount's EROFS).
cat >"$dir/clean.log" <<'LOG'
100   execve("/usr/sbin/vmferryd", ["/usr/sbin/vmferryd"], 0x7ffd /* 3 vars */) = 0
100   openat(AT_FDCWD</>, "/var/lib/vmferry/store/data.mdb", O_RDWR|O_CREAT|O_CLOEXEC, 0600) = 5</var/lib/vmferry/store/data.mdb>
100   mkdir("/var/lib/vmferry", 0700)   = -1 EEXIST (File exists)
101   openat(7</var/lib/vmferry/repo>, "tmp/c.1", O_WRONLY|O_CREAT|O_EXCL, 0600) = 9</var/lib/vmferry/repo/tmp/c.1>
101   renameat(7</var/lib/vmferry/repo>, "tmp/c.1", 7</var/lib/vmferry/repo>, "chunks/ab/c") = 0
100   socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 4<TCP:[1]>
100   openat(AT_FDCWD</>, "/etc/vmferry/node.yaml", O_RDONLY) = 6</etc/vmferry/node.yaml>
100   openat(AT_FDCWD</>, "/dev/urandom", O_RDONLY) = 6</dev/urandom>
100   openat(AT_FDCWD</>, "/proc/101/status", O_RDONLY) = 6</proc/101/status>
100   mmap(NULL, 4096, PROT_READ|PROT_EXEC, MAP_PRIVATE, 3, 0) = 0x7f00
100   chmod("/run/vmferry/vmferry.sock", 0660) = 0
100   openat(AT_FDCWD</>, "/tmp/x", O_WRONLY|O_CREAT, 0600) = 6</tmp/x>
100   openat(AT_FDCWD</>, "/srv/rw/disk", O_RDWR) = 6</srv/rw/disk>
100   read(3<pipe:[1]>, <unfinished ...>
101   mkdir("/var", 0700 <unfinished ...>
100   <... read resumed>"x", 1) = 1
101   <... mkdir resumed>)              = -1 EEXIST (File exists)
100   clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES, child_tid=0x1}, 88) = 101
LOG
out=$(python3 "$check" "$dir/u.service" "$dir/clean.log") || die "a clean log is refused: $out"
grep -q "checked 16 system calls of 9 kinds, families AF_INET, in 2 processes: 0 kinds" <<<"$out" ||
	die "the summary of a clean log: $out"
ok "a log within the sandbox passes"

# One line per option, each outside the sandbox: the violation it must give.
while IFS='|' read -r want line; do
	printf '%b\n' "$line" >"$dir/bad.log"
	if out=$(python3 "$check" "$dir/u.service" "$dir/bad.log"); then
		die "not caught: $line"
	fi
	grep -qF "violation: $want" <<<"$out" || die "$line: expected '$want' in: $out"
	ok "caught: $want"
done <<'CASES'
SystemCallFilter: setuid|100   setuid(0)                         = -1 EPERM (Operation not permitted)
SystemCallFilter: mount|100   mount("none", "/mnt", "tmpfs", 0, NULL) = -1 EPERM
RestrictAddressFamilies: AF_PACKET|100   socket(AF_PACKET, SOCK_RAW, 768) = -1 EPERM
RestrictAddressFamilies: AF_NETLINK|100   socketpair(AF_NETLINK, SOCK_RAW, 0, [3, 4]) = 0
ProtectSystem=strict: write to /etc/vmferry/x|100   openat(AT_FDCWD</>, "/etc/vmferry/x", O_WRONLY|O_CREAT, 0600) = 5</etc/vmferry/x>
ProtectSystem=strict: write to /var/log/vmferry|100   mkdir("var/log/vmferry", 0700)   = 0
ProtectSystem=strict: write to /usr/share/vmferry/dashboard|101   unlinkat(7</usr/share/vmferry>, "dashboard", AT_REMOVEDIR) = 0
ProtectSystem=strict: write to /var/log|100   mkdir("/var/log", 0700 <unfinished ...>\n101   futex(0x1, FUTEX_WAKE, 1) = 0\n100   <... mkdir resumed>)              = 0
ProtectSystem=strict: write to /var/lib/other/f|100   renameat2(AT_FDCWD</var/lib/vmferry>, "f", AT_FDCWD</var/lib/vmferry>, "../other/f", 0) = 0
ProtectHome: /root/.netrc|100   openat(AT_FDCWD</>, "/root/.netrc", O_RDONLY) = -1 ENOENT (No such file or directory)
ProtectHome: /home/op/x|100   newfstatat(AT_FDCWD</>, "/home/op/x", 0x7ffe, 0) = -1 ENOENT
PrivateDevices: /dev/sdb|100   openat(AT_FDCWD</>, "/dev/sdb", O_RDWR) = 6</dev/sdb>
ProtectProc: /proc/1/environ|100   openat(AT_FDCWD</>, "/proc/1/environ", O_RDONLY) = 6
ProtectKernelTunables: write to /sys/class/scsi_host/host0/scan|100   openat(AT_FDCWD</>, "/sys/class/scsi_host/host0/scan", O_WRONLY|O_CREAT|O_TRUNC, 0666) = -1 EACCES
MemoryDenyWriteExecute: mmap|100   mmap(NULL, 4096, PROT_READ|PROT_WRITE|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f00
MemoryDenyWriteExecute: mprotect|100   mprotect(0x7f00, 4096, PROT_READ|PROT_EXEC) = 0
RestrictNamespaces: unshare|100   unshare(CLONE_NEWNS)              = 0
RestrictNamespaces: clone3|100   clone3({flags=CLONE_NEWUSER|CLONE_VM, child_tid=0x1}, 88) = 101
RestrictSUIDSGID: chmod|100   chmod("/run/vmferry/x", 04755) = 0
RestrictRealtime: sched_setscheduler|100   sched_setscheduler(0, SCHED_FIFO, [1]) = 0
CASES

# Without the options, the same lines are no violations (the unit is
# read, not assumed).
printf '[Service]\nExecStart=/usr/sbin/vmferryd\n' >"$dir/open.service"
printf '%s\n' '100   openat(AT_FDCWD</>, "/etc/vmferry/x", O_WRONLY|O_CREAT, 0600) = 5' \
	'100   setuid(0) = 0' '100   socket(AF_PACKET, SOCK_RAW, 768) = 3' >"$dir/bad.log"
out=$(python3 "$check" "$dir/open.service" "$dir/bad.log") || die "a unit without a sandbox refuses: $out"
ok "a unit without those options lets the same lines through"
echo "$pass passed"
