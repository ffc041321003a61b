#!/usr/bin/python3
"""chunkref.py - the reference of tools/bench's figures 9h' and 9h'': one
chunk file of a vmferry repository read from disk and decompressed,
timed, with python3-zstandard.

  chunkref.py CHUNK_FILE [FROM DUMP]

Times open, the whole file read in 128 KiB reads (as cat and the zstd CLI
read) and, when the chunk is stored compressed, its decompression; the
interpreter's start-up and imports apart.  The caller has dropped the
file from the page cache.  The header is SPEC §10's (16 bytes: "VFCK", version,
flags with 0x01 = a zstd frame follows, two zero bytes, plain length and
payload length, big-endian); an encrypted repository is not this
reference's business.  With FROM and DUMP, then checks that the 4 KiB at
FROM of the plain bytes are the ones qemu-io dumped (`read -v`) into DUMP
over NBD.  Prints JSON: ms, sha_ms (then the SHA-256 of the plain bytes,
which the engine checks against the chunk's id and this reference does
not: timed apart, for the like-for-like), stored ("zstd" or "plain"),
file_bytes, and with DUMP data_ok.
"""
import hashlib
import json
import os
import re
import struct
import sys
import time

import zstandard

# The read size of Debian's cat and zstd CLI (strace: 128 KiB reads).
READ = 131072


def main(path, frm, dump):
    t0 = time.monotonic()
    with open(path, "rb", buffering=0) as f:
        data = bytearray(os.fstat(f.fileno()).st_size)
        view, got = memoryview(data), 0
        while got < len(data) and (n := f.readinto(view[got:got + READ])):
            got += n
    magic, _version, flags, _zero, plain_len, _payload = struct.unpack(">4sBBHII", data[:16])
    if magic != b"VFCK" or flags & ~1:
        sys.exit(f"chunkref.py: {path}: not a plain-repository chunk (flags {flags})")
    body = memoryview(data)[16:]
    if flags & 1:
        plain = zstandard.ZstdDecompressor().decompress(body, max_output_size=plain_len)
    else:
        plain = body
    t1 = time.monotonic()
    hashlib.sha256(plain).digest()
    out = {"ms": round((t1 - t0) * 1000, 3), "sha_ms": round((time.monotonic() - t1) * 1000, 3),
           "stored": "zstd" if flags & 1 else "plain", "file_bytes": len(data)}
    if dump is not None:
        got = bytearray()
        with open(dump) as f:
            for line in f:
                m = re.match(r"^[0-9a-f]{8}:  ((?:[0-9a-f]{2} ){1,16})", line)
                if m:
                    got += bytes.fromhex(m.group(1))
        out["data_ok"] = len(got) == 4096 and bytes(got) == bytes(plain[frm:frm + 4096])
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 4):
        sys.exit("usage: chunkref.py CHUNK_FILE [FROM DUMP]")
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 4 else 0, sys.argv[3] if len(sys.argv) == 4 else None)
