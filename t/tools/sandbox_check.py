#!/usr/bin/env python3
"""sandbox_check.py UNIT STRACE_LOG [--cwd DIR] — would a systemd unit's
sandbox have let through what a process did?

There is no systemd as PID 1 on the test machine, so the sandbox of
dist/vmferryd.service cannot be tried for real.  Instead the daemon runs
under `strace -f -y` as the unit's user, and this reads the log against
the unit's [Service] options, each the way systemd.exec(5) says it acts:

  SystemCallFilter=         every system call in the allow list (the lines
                            without ~) and in no ~deny line; groups (@name)
                            expanded with `systemd-analyze syscall-filter`
  RestrictAddressFamilies=  every socket()/socketpair() family listed
  ProtectSystem=strict      writes only under StateDirectory=,
                            RuntimeDirectory=, ReadWritePaths=, /tmp and
                            /var/tmp (PrivateTmp=), or the API file systems
  ProtectHome=yes           nothing under /home, /root, /run/user
  PrivateDevices=yes        only the pseudo devices under /dev
  ProtectKernelTunables=    no writes under /proc/sys or /sys
  ProtectProc=invisible     no /proc/PID of another process
  MemoryDenyWriteExecute=   no mapping both writable and executable, no
                            mprotect() to executable
  RestrictNamespaces=yes    no CLONE_NEW* in clone, clone3, unshare
  RestrictSUIDSGID=yes      no chmod to set-user-ID or set-group-ID
  RestrictRealtime=yes      no SCHED_FIFO / SCHED_RR

Attempts count, failed or not: under the sandbox they would fail
differently.  Prints one line per kind of violation (with the first few
log lines that show it) and a summary; exit 0 when there is none, 1
otherwise, 2 for a usage error.
"""
import re
import subprocess
import sys

from strace_log import LINE, joined

PSEUDO_DEVICES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                  "/dev/tty", "/dev/ptmx", "/dev/log", "/dev/stdin", "/dev/stdout", "/dev/stderr"}
PSEUDO_DEVICE_DIRS = ("/dev/pts/", "/dev/shm/", "/dev/mqueue/", "/dev/hugepages/", "/dev/fd/")
API_FS = ("/dev/", "/proc/", "/sys/")

# A path argument: optional dirfd (AT_FDCWD</cwd> or 3</dir>), then "path".
DIRFD_PATH = re.compile(r'(?:(AT_FDCWD|-?\d+)(?:<([^>]*)>)?, )?"((?:[^"\\]|\\.)*)"')
# Calls whose first string argument (after an optional dirfd) is a path,
# and which of them write.
PATH_CALLS = {
    "open", "openat", "openat2", "creat", "stat", "lstat", "newfstatat", "statx", "access",
    "faccessat", "faccessat2", "readlink", "readlinkat", "execve", "execveat", "mkdir", "mkdirat",
    "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2", "link", "linkat", "symlink",
    "symlinkat", "chmod", "fchmodat", "truncate", "mknod", "mknodat", "utimensat", "chdir",
    "inotify_add_watch", "statfs", "getxattr", "lgetxattr", "setxattr", "lsetxattr",
}
WRITE_CALLS = {
    "creat", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "link", "linkat", "symlink", "symlinkat", "chmod", "fchmodat", "truncate", "mknod", "mknodat",
    "utimensat", "setxattr", "lsetxattr",
}
TWO_PATH_CALLS = {"rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat"}


def read_unit(path):
    """The [Service] options: name -> list of values, in order."""
    opts, section = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]" and "=" in line:
                key, val = line.split("=", 1)
                opts.setdefault(key.strip(), []).append(val.strip())
    return opts


def last(opts, key, default=""):
    return opts.get(key, [default])[-1]


def yes(opts, key):
    return last(opts, key).lower() in ("yes", "true", "1", "on", "strict", "full", "invisible")


_groups = {}


def expand(name):
    """A syscall-filter item as a set of system call names."""
    if not name.startswith("@"):
        return {name}
    if name not in _groups:
        out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True,
                             text=True, check=True).stdout
        names = set()
        for line in out.splitlines()[1:]:
            item = line.strip()
            if item and not item.startswith("#"):
                names |= expand(item)
        _groups[name] = names
    return _groups[name]


def syscall_filter(opts):
    allow, deny = None, set()
    for val in opts.get("SystemCallFilter", []):
        if not val:
            allow, deny = None, set()
            continue
        if val.startswith("~"):
            for item in val[1:].split():
                deny |= expand(item)
        else:
            allow = allow or set()
            for item in val.split():
                allow |= expand(item)
    return allow, deny


def under(path, roots):
    return any(path == r.rstrip("/") or path.startswith(r.rstrip("/") + "/") for r in roots)


def normalize(path):
    parts = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
        else:
            parts.append(p)
    return "/" + "/".join(parts)


def paths_of(call, args, cwd):
    """The absolute paths a call names, with whether it writes them."""
    found = []
    for m in DIRFD_PATH.finditer(args):
        fd, fdpath, path = m.groups()
        path = path.encode().decode("unicode_escape")
        if not path.startswith("/"):
            base = fdpath if fdpath else cwd
            path = base + "/" + path
        found.append(normalize(path))
        if call not in TWO_PATH_CALLS or len(found) == 2:
            break
    # mkdir of what exists fails with EEXIST before the kernel looks at a
    # read-only mount (filename_create()), so a `mkdir -p` walk down from
    # / is no write.
    writes = call in WRITE_CALLS and not (call.startswith("mkdir") and "= -1 EEXIST" in args)
    if call in ("open", "openat", "openat2"):
        writes = bool(re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", args))
    if call == "symlink" or call == "symlinkat":
        found = found[1:]  # the target is only text
    return found, writes


def main(argv):
    if len(argv) < 3:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    unit, log = argv[1], argv[2]
    cwd = argv[argv.index("--cwd") + 1] if "--cwd" in argv else "/"
    opts = read_unit(unit)
    allow, deny = syscall_filter(opts)
    families = set(" ".join(opts.get("RestrictAddressFamilies", [])).split()) or None
    writable = []
    if last(opts, "ProtectSystem") == "strict":
        writable += ["/var/lib/" + d for d in " ".join(opts.get("StateDirectory", [])).split()]
        writable += ["/run/" + d for d in " ".join(opts.get("RuntimeDirectory", [])).split()]
        writable += [p.lstrip("-+") for p in " ".join(opts.get("ReadWritePaths", [])).split()]
        if yes(opts, "PrivateTmp"):
            writable += ["/tmp", "/var/tmp"]
        writable += [r.rstrip("/") for r in API_FS]
    pids = set()
    violations = {}
    seen_calls, seen_families = set(), set()

    def bad(kind, line):
        violations.setdefault(kind, []).append(line.rstrip())

    with open(log, errors="replace") as f:
        lines = joined(f)
    for line in lines:
        m = LINE.match(line)
        if m:
            pids.add(m.group(1))
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        _, call, args = m.groups()
        seen_calls.add(call)
        if allow is not None and (call not in allow or call in deny):
            bad("SystemCallFilter: %s" % call, line)
        if call in ("socket", "socketpair"):
            fam = args.split(",", 1)[0].strip()
            seen_families.add(fam)
            if families is not None and fam not in families:
                bad("RestrictAddressFamilies: %s" % fam, line)
        if yes(opts, "MemoryDenyWriteExecute"):
            if call in ("mmap", "mprotect", "pkey_mprotect") and "PROT_EXEC" in args and (
                    call != "mmap" or "PROT_WRITE" in args):
                bad("MemoryDenyWriteExecute: %s" % call, line)
        if yes(opts, "RestrictNamespaces") and call in ("clone", "clone3", "unshare", "setns") and \
                "CLONE_NEW" in args:
            bad("RestrictNamespaces: %s" % call, line)
        if yes(opts, "RestrictRealtime") and call in ("sched_setscheduler", "sched_setattr") and \
                re.search(r"SCHED_(FIFO|RR)", args):
            bad("RestrictRealtime: %s" % call, line)
        if yes(opts, "RestrictSUIDSGID") and call in ("chmod", "fchmod", "fchmodat"):
            mode = re.search(r"\b0([0-7]{3,4})\)", args)
            if mode and int(mode.group(1), 8) & 0o6000:
                bad("RestrictSUIDSGID: %s" % call, line)
        if call not in PATH_CALLS:
            continue
        paths, writes = paths_of(call, args, cwd)
        for p in paths:
            if yes(opts, "ProtectHome") and under(p, ["/home", "/root", "/run/user"]):
                bad("ProtectHome: %s" % p, line)
            if yes(opts, "PrivateDevices") and p.startswith("/dev/") and p not in PSEUDO_DEVICES \
                    and not p.startswith(PSEUDO_DEVICE_DIRS):
                bad("PrivateDevices: %s" % p, line)
            if last(opts, "ProtectProc") in ("invisible", "noaccess", "ptraceable"):
                pm = re.match(r"/proc/(\d+)(/|$)", p)
                if pm and pm.group(1) not in pids:
                    bad("ProtectProc: %s" % p, line)
            if not writes:
                continue
            if writable and not under(p, writable):
                bad("ProtectSystem=strict: write to %s" % p, line)
            if yes(opts, "ProtectKernelTunables") and under(p, ["/proc/sys", "/sys"]):
                bad("ProtectKernelTunables: write to %s" % p, line)

    for kind in sorted(violations):
        print("violation: %s (%d times)" % (kind, len(violations[kind])))
        for line in violations[kind][:3]:
            print("    " + line)
    print("checked %d system calls of %d kinds, families %s, in %d processes: %d kinds of violation" %
          (sum(1 for x in lines if LINE.match(x)), len(seen_calls), " ".join(sorted(seen_families)) or "none",
           len(pids), len(violations)))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
