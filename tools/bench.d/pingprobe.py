#!/usr/bin/python3
"""tools/bench.d/pingprobe.py — how fast the status socket answers, over time.

    pingprobe.py SOCKET OUT [INTERVAL_MS]

One connection to vmferryd's status socket; every INTERVAL_MS (default
20) it sends {"op":"ping"} and waits for the answer line.  Each answer
appends "SENT_EPOCH LATENCY_MS" to OUT (the epoch of the send, seconds
with microseconds; the time to the whole answer line, in milliseconds),
so that tools/bench can take the largest latency inside any window of
the run (e.g. while a backup hashes and compresses).  Runs until killed
or until the daemon closes the connection.  The latency is what a client
on this machine sees: it includes the client's own wait for a CPU.
"""
import signal
import socket
import sys
import time


def main():
    path, out = sys.argv[1], sys.argv[2]
    interval = (float(sys.argv[3]) if len(sys.argv) > 3 else 20.0) / 1000.0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    f = s.makefile("rb")
    with open(out, "a", buffering=1) as o:
        while True:
            t0 = time.time()
            m0 = time.monotonic()
            s.sendall(b'{"op":"ping"}\n')
            line = f.readline()
            m1 = time.monotonic()
            if not line:
                return
            o.write("%.6f %.3f\n" % (t0, (m1 - m0) * 1000.0))
            time.sleep(interval)


if __name__ == "__main__":
    main()
