#!/usr/bin/env python3
"""Many status socket clients at once, for t/chaos/chaos_clients.sh.

  clients.py hold SOCKET N_WATCH N_FLOOD
      opens N_WATCH connections that send {"op":"watch"} and N_FLOOD that
      pipeline `jobs` requests, and never reads a byte from any of them;
      prints "held N" once every request is written (or the daemon stopped
      taking them), then sleeps until killed.

  clients.py run SOCKET N_GOOD N_GARBAGE ROUNDS JOBS
      N_GOOD connections each do ROUNDS of ping + jobs and check every
      answer (ok, JOBS jobs, answers in order); N_GARBAGE connections send
      garbage (malformed JSON, binary, overlong lines, half requests) and
      must get an error answer or a close, never a hang.  All connections
      are open at the same time.  Prints a JSON summary; exit 1 on any
      wrong or missing answer.

Only the standard library; one process, non-blocking sockets and a
selector, so a thousand clients need no threads.
"""
import json
import os
import random
import selectors
import socket
import sys
import time


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    for _ in range(200):
        try:
            s.connect(path)
            break
        except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
            # the listener's backlog is full for a moment
            time.sleep(0.05)
    else:
        raise RuntimeError("cannot connect to " + path)
    s.setblocking(False)
    return s


def hold(path, n_watch, n_flood):
    socks = []
    pending = {}
    for i in range(n_watch + n_flood):
        s = connect(path)
        socks.append(s)
        if i < n_watch:
            pending[s] = b'{"op":"watch"}\n'
        else:
            # far more answers than any buffer holds
            pending[s] = b'{"op":"jobs"}\n' * 20000
    # Write until the daemon stops reading (it throttles) or all is sent.
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE)
    idle_since = time.monotonic()
    while pending and time.monotonic() - idle_since < 5:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            if s not in pending:
                continue
            try:
                n = s.send(pending[s][:65536])
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                n = len(pending[s])  # closed by the daemon: fine
            if n:
                idle_since = time.monotonic()
            pending[s] = pending[s][n:]
            if not pending[s]:
                del pending[s]
                sel.unregister(s)
    print("held %d" % len(socks), flush=True)
    while True:
        time.sleep(3600)


GARBAGE = [
    b'{"op":\n',
    b'\x00\xff\xfe garbage \x01\x02\n',
    b'[1,2,3]\n',
    b'{"op":"jobs","rule":' + b'"x' * 40000 + b'"}\n',
    b'x' * 70000,                      # a line too long, no newline
    b'{"op":"ping"',                   # half a request, then EOF
    b'{"op":"explode"}\n{"op":"ping"}\n',
    b'\n\n\n{}\n',
]


class Client:
    def __init__(self, sock, kind, script):
        self.sock = sock
        self.kind = kind
        self.out = script
        self.inbuf = b""
        self.answers = []
        self.closed = False
        self.eof_sent = False


def run(path, n_good, n_garbage, rounds, njobs):
    random.seed(1)
    clients = []
    for i in range(n_good):
        script = b"".join(b'{"op":"ping","id":"p%d"}\n{"op":"jobs","id":"j%d"}\n' % (r, r) for r in range(rounds))
        clients.append(Client(connect(path), "good", script))
    for i in range(n_garbage):
        clients.append(Client(connect(path), "garbage", GARBAGE[i % len(GARBAGE)]))
    sel = selectors.DefaultSelector()
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    deadline = time.monotonic() + 300
    open_count = len(clients)
    while open_count and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=1):
            c = key.data
            if ev & selectors.EVENT_WRITE and c.out:
                try:
                    n = c.sock.send(c.out[:65536])
                    c.out = c.out[n:]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    c.out = b""
            if not c.out and not c.eof_sent:
                # all sent: half-close, the daemon answers and closes
                try:
                    c.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                c.eof_sent = True
                sel.modify(c.sock, selectors.EVENT_READ, c)
            if ev & selectors.EVENT_READ:
                try:
                    data = c.sock.recv(1 << 16)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    c.inbuf += data
                    continue
                sel.unregister(c.sock)
                c.sock.close()
                c.closed = True
                open_count -= 1
    bad = []
    good_answers = 0
    garbage_errors = 0
    for i, c in enumerate(clients):
        if not c.closed:
            bad.append("%s client %d: no end of answers" % (c.kind, i))
            continue
        lines = [l for l in c.inbuf.split(b"\n") if l]
        try:
            answers = [json.loads(l) for l in lines]
        except ValueError as e:
            bad.append("%s client %d: answer is not JSON: %s" % (c.kind, i, e))
            continue
        if c.kind == "good":
            want = []
            for r in range(rounds):
                want += ["p%d" % r, "j%d" % r]
            ids = [a.get("id") for a in answers]
            if ids != want:
                bad.append("good client %d: answers %s, wanted %d in order" % (i, ids[:6], len(want)))
                continue
            for a in answers:
                if not a.get("ok"):
                    bad.append("good client %d: %s" % (i, a))
                    break
                if a["id"].startswith("j") and len(a.get("jobs", [])) != njobs:
                    bad.append("good client %d: %d jobs, want %d" % (i, len(a.get("jobs", [])), njobs))
                    break
            else:
                good_answers += len(answers)
        else:
            if any(a.get("ok") is False and a.get("error") for a in answers):
                garbage_errors += 1
            elif c.inbuf == b"" or all(a.get("ok") for a in answers):
                # half a request then EOF, or nothing wrong in it
                garbage_errors += 1
            else:
                bad.append("garbage client %d: %s" % (i, answers[:2]))
    summary = {"good": n_good, "good_answers": good_answers, "garbage": n_garbage,
               "garbage_answered": garbage_errors, "bad": bad[:10], "nbad": len(bad)}
    print(json.dumps(summary), flush=True)
    return 1 if bad else 0


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "hold":
        hold(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) >= 7 and sys.argv[1] == "run":
        sys.exit(run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])))
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
