#!/usr/bin/env python3
"""Helpers of t/integration/test_http.sh: hostile HTTP clients and a reader
of the Prometheus text format that shares no code with the daemon's writer.

  http_tool.py job RULE VM < METRICS     one job's values as JSON:
      [state, bytes_done, bytes_total, rate_bps, progress, unviewed_errors]
  http_tool.py gauge NAME < METRICS      an unlabelled sample's value
  http_tool.py idle PORT N SECONDS       N connections that send nothing,
      held SECONDS; prints how many connected
  http_tool.py slow PORT SECONDS         a request sent one byte a second
  http_tool.py raw PORT                  stdin sent as is; prints the
      status line of the answer (or "closed")
"""
import json
import re
import resource
import socket
import sys
import time

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def unescape(v):
    out, i = [], 0
    while i < len(v):
        if v[i] == '\\' and i + 1 < len(v):
            out.append({'n': '\n', '\\': '\\', '"': '"'}.get(v[i + 1], v[i + 1]))
            i += 2
        else:
            out.append(v[i])
            i += 1
    return ''.join(out)


def samples(text):
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise SystemExit('unparsable sample: %r' % line)
        labels = {k: unescape(v) for k, v in LABEL.findall(m.group(3) or '')}
        yield m.group(1), labels, float(m.group(4))


def job(rule, vm):
    want = {'vmferry_job_transfer_done_bytes': 1, 'vmferry_job_transfer_size_bytes': 2,
            'vmferry_job_rate_bytes_per_second': 3, 'vmferry_job_progress_percent': 4,
            'vmferry_job_unviewed_errors': 5}
    out = [None] * 6
    for name, labels, value in samples(sys.stdin.read()):
        if labels.get('rule') != rule or labels.get('vm') != vm:
            continue
        if name == 'vmferry_job_state':
            out[0] = labels['state']
        elif name in want:
            out[want[name]] = int(value)
    print(json.dumps(out, separators=(',', ':')))


def gauge(name):
    for n, labels, value in samples(sys.stdin.read()):
        if n == name and not labels:
            print(int(value))
            return
    raise SystemExit('no sample ' + name)


def idle(port, n, secs):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    conns = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(('127.0.0.1', port))
            conns.append(s)
        except OSError:
            s.close()
    print(len(conns), flush=True)
    time.sleep(secs)
    for s in conns:
        s.close()


def slow(port, secs):
    s = socket.create_connection(('127.0.0.1', port))
    req = b'GET /api/v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' + b'a' * 4096
    end = time.time() + secs
    for b in req:
        if time.time() > end:
            break
        try:
            s.send(bytes([b]))
        except OSError:
            print('closed')
            return
        time.sleep(1)
    print('sent')


def raw(port):
    data = sys.stdin.buffer.read()
    s = socket.create_connection(('127.0.0.1', port))
    s.settimeout(10)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        ans = s.recv(4096)
    except OSError:
        ans = b''
    line = ans.split(b'\r\n', 1)[0].decode('latin-1')
    print(line if line else 'closed')


def main():
    cmd = sys.argv[1]
    if cmd == 'job':
        job(sys.argv[2], sys.argv[3])
    elif cmd == 'gauge':
        gauge(sys.argv[2])
    elif cmd == 'idle':
        idle(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    elif cmd == 'slow':
        slow(int(sys.argv[2]), float(sys.argv[3]))
    elif cmd == 'raw':
        raw(int(sys.argv[2]))
    else:
        raise SystemExit(__doc__)


if __name__ == '__main__':
    main()
