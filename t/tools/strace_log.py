#!/usr/bin/env python3
"""strace_log.py LOG — a `strace -f` log with each call that strace split
across threads put back on one line.

When another thread interrupts a call, strace writes it in two halves:
`PID call(args <unfinished ...>`, then `PID <... call resumed>) = R`.
A reader that looks at one line at a time would take the first half for
a call with no result.  A call still unfinished at the end of the log
(its process exited in it) stays as its first half, without the mark.
Used by t/tools/sandbox_check.py and t/chaos/chaos_sec_names.sh.
"""
import re
import sys

LINE = re.compile(r"^(\d+) +([a-z_0-9]+)\((.*)$")
RESUMED = re.compile(r"^(\d+) +<\.\.\. [a-z_0-9]+ resumed>(.*)$")
UNFINISHED = " <unfinished ...>"


def joined(f):
    """The lines of f (an open log), split calls joined."""
    lines, pending = [], {}
    for line in f:
        line = line.rstrip("\n")
        m = RESUMED.match(line)
        if m and m.group(1) in pending:
            lines.append(pending.pop(m.group(1)) + m.group(2))
        elif line.endswith(UNFINISHED) and LINE.match(line):
            pending[LINE.match(line).group(1)] = line[:-len(UNFINISHED)]
        else:
            lines.append(line)
    return lines + list(pending.values())


def main(argv):
    if len(argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    # Latin-1: every byte of the log comes out as it went in.
    with open(argv[1], encoding="latin-1") as f:
        out = joined(f)
    sys.stdout.buffer.write("".join(line + "\n" for line in out).encode("latin-1"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
