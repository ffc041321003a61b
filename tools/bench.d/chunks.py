#!/usr/bin/python3
"""tools/bench.d/chunks.py — a disk image seen as the repository's 4 MiB chunks.

    chunks.py sums FILE            SHA-256 of each 4 MiB chunk, one hex line each
    chunks.py changed FILE SUMS    the chunks of FILE whose SHA-256 differs from
                                   SUMS (an earlier `sums` of the same disk):
                                   JSON {"chunks", "plain", "zstd", "smaller"}

For the backup figure (9c): "plain" is the bytes of the changed chunks,
"zstd" the sum of their zstd level-1 frames with content size and
checksum (what docs/REPOSITORY.md says a compressed chunk file holds),
"smaller" the sum over the chunks of the smaller of the two (a chunk is
stored compressed only when that is shorter).  Independent of the
engine: Python's hashlib and python3-zstandard.
"""
import hashlib
import json
import sys

import zstandard

CHUNK = 4 * 1048576


def chunks(path):
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                return
            yield b


def main():
    if sys.argv[1] == "sums":
        for b in chunks(sys.argv[2]):
            print(hashlib.sha256(b).hexdigest())
        return
    if sys.argv[1] == "changed":
        with open(sys.argv[3]) as f:
            before = [l.strip() for l in f]
        z = zstandard.ZstdCompressor(level=1, write_checksum=True, write_content_size=True)
        n = plain = zs = smaller = 0
        for i, b in enumerate(chunks(sys.argv[2])):
            if i < len(before) and hashlib.sha256(b).hexdigest() == before[i]:
                continue
            c = len(z.compress(b))
            n += 1
            plain += len(b)
            zs += c
            smaller += min(c, len(b))
        print(json.dumps({"chunks": n, "plain": plain, "zstd": zs, "smaller": smaller}))
        return
    sys.exit("usage: chunks.py sums FILE | changed FILE SUMS")


if __name__ == "__main__":
    main()
