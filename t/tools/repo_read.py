#!/usr/bin/python3
"""repo_read.py - an independent reader of vmferry backup repositories.

Written from docs/REPOSITORY.md alone; it shares no code with the writer
(drivers/repo*.c), so the tests can trust what it reads.  An encrypted
repository is read with its key file: `repo_read.py --key KEYFILE REPO ...`.
Needs Debian's python3, python3-zstandard and (for encrypted
repositories) python3-cryptography.

  repo_read.py REPO points [RULE [VM]]       complete points, one per line
  repo_read.py REPO manifest RULE VM SEQ     the manifest's body, checked, as JSON
  repo_read.py REPO check RULE VM SEQ        every chunk of the point read and its id checked
  repo_read.py REPO ids RULE VM SEQ          the point's chunk ids from its checked indexes,
                                             "DISK CHUNK ID" a line (ID in hex; chunks not read)
  repo_read.py REPO chunks [RULE [VM [SEQ]]] the distinct chunk ids (hex, not the zero
                                             chunk) the indexes of those complete points name,
                                             sorted, one per line (manifests and indexes checked,
                                             chunks not read)
  repo_read.py REPO image RULE VM SEQ DISK OUT
                                             disk DISK of the point as a raw image in OUT

Exit status: 0, 1 when anything is damaged or not this format (the message
names the file or chunk), 2 for a usage error.
"""
import hashlib
import json
import os
import re
import struct
import sys

import hmac
import zstandard

CHUNK = 4 * 1024 * 1024
MAX_CAPACITY = 64 << 40
ZERO_ID = bytes(32)

# An encrypted repository's keys (docs/REPOSITORY.md, "Encryption"): set by
# read_repo_json from the key file given with --key.
KEY_FILE = None
ID_KEY = None
ENC_KEY = None


def load_key(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) == 32:
        return raw
    text = raw.decode("ascii", "replace")
    m = re.fullmatch(r"([0-9a-fA-F]{64})\s*", text)
    if not m:
        raise Damaged(f"{path}: neither 32 raw bytes nor 64 hex digits")
    return bytes.fromhex(m.group(1))


def derive(key, label):
    return hmac.new(key, label.encode("ascii"), hashlib.sha256).digest()


class Damaged(Exception):
    pass


def read_repo_json(repo):
    path = os.path.join(repo, "repo.json")
    try:
        with open(path, "rb") as f:
            conf = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise Damaged(f"{path}: not a repository: {e}")
    if (conf.get("format") != "vmferry-repository" or conf.get("version") != 1
            or conf.get("chunk_size") != CHUNK or "encryption" not in conf):
        raise Damaged(f"{path}: not a vmferry repository of version 1")
    global ID_KEY, ENC_KEY
    enc = conf["encryption"]
    if enc is None:
        if KEY_FILE is not None:
            raise Damaged(f"{repo}: not encrypted, but --key was given")
        return
    if KEY_FILE is None:
        raise Damaged(f"{repo}: encrypted; give its key file with --key")
    if enc.get("cipher") != "aes-256-gcm" or enc.get("ids") != "hmac-sha256":
        raise Damaged(f"{repo}: unknown encryption {enc}")
    key = load_key(KEY_FILE)
    if derive(key, "vmferry-repository key check").hex() != enc.get("key_check"):
        raise Damaged(f"{repo}: {KEY_FILE} is not this repository's key")
    ID_KEY = derive(key, "vmferry-repository chunk id")
    ENC_KEY = derive(key, "vmferry-repository chunk encryption")


def point_dir(repo, rule, vm, seq):
    return os.path.join(repo, "points", rule, vm, str(seq))


def read_manifest(repo, rule, vm, seq):
    path = os.path.join(point_dir(repo, rule, vm, seq), "manifest.json")
    with open(path, "rb") as f:
        data = f.read()
    prefix, middle, suffix = b'{"checksum":"', b'","manifest":', b"}\n"
    if (len(data) < 90 + 2 or not data.startswith(prefix) or data[77:90] != middle
            or not data.endswith(suffix)):
        raise Damaged(f"{path}: not {{\"checksum\":...,\"manifest\":...}}")
    body = data[90:-2]
    if hashlib.sha256(body).hexdigest() != data[13:77].decode("ascii", "replace"):
        raise Damaged(f"{path}: checksum mismatch")
    m = json.loads(body)
    if m.get("format") != "vmferry-point" or m.get("version") != 1:
        raise Damaged(f"{path}: not a point manifest of version 1")
    if m["rule"] != rule or m["vm"] != vm or m["seq"] != seq:
        raise Damaged(f"{path}: the manifest is of {m['rule']}/{m['vm']}/{m['seq']}")
    if m["mode"] not in ("full", "incremental", "differential"):
        raise Damaged(f"{path}: mode {m['mode']!r}")
    if (m["mode"] == "full") != (m["parent"] is None):
        raise Damaged(f"{path}: parent {m['parent']!r} for a {m['mode']} point")
    return m


def read_index(repo, rule, vm, seq, n, disk):
    path = os.path.join(point_dir(repo, rule, vm, seq), f"disk{n}.idx")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 64:
        raise Damaged(f"{path}: shorter than an index")
    magic, version, chunk, reserved, capacity, count = struct.unpack(">4sIIIQQ", data[:32])
    if magic != b"VFIX" or version != 1 or chunk != CHUNK or reserved != 0:
        raise Damaged(f"{path}: not an index of version 1 with 4 MiB chunks")
    if capacity != disk["capacity"] or not 0 < capacity <= MAX_CAPACITY:
        raise Damaged(f"{path}: capacity {capacity}, the manifest says {disk['capacity']}")
    if count != (capacity + CHUNK - 1) // CHUNK or len(data) != 32 + 32 * count + 32:
        raise Damaged(f"{path}: {count} chunks in {len(data)} bytes for {capacity} bytes")
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise Damaged(f"{path}: checksum mismatch")
    if data[-32:].hex() != disk["index_sha256"]:
        raise Damaged(f"{path}: not the index the manifest names")
    return capacity, [data[32 + 32 * i:64 + 32 * i] for i in range(count)]


def read_chunk(repo, cid, length):
    """The chunk's bytes, checked against its id."""
    if cid == ZERO_ID:
        return bytes(length)
    hexid = cid.hex()
    path = os.path.join(repo, "chunks", hexid[:2], hexid)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise Damaged(f"chunk {hexid}: missing")
    if len(data) < 16:
        raise Damaged(f"chunk {hexid}: shorter than its header")
    magic, version, flags, reserved, plain, payload = struct.unpack(">4sBBHII", data[:16])
    want = (2, 3) if ENC_KEY is not None else (0, 1)
    if magic != b"VFCK" or version != 1 or reserved != 0 or flags not in want:
        raise Damaged(f"chunk {hexid}: not a chunk header of this repository (flags {flags})")
    if plain != length or payload != len(data) - 16:
        raise Damaged(f"chunk {hexid}: holds {plain} bytes in {payload}, {length} expected")
    body = data[16:]
    if flags & 2:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        if len(body) < 28:
            raise Damaged(f"chunk {hexid}: a payload shorter than a nonce and a tag")
        try:
            # The nonce, then ciphertext and tag; the header and the id are
            # the additional authenticated data.
            body = AESGCM(ENC_KEY).decrypt(body[:12], body[12:], data[:16] + cid)
        except InvalidTag:
            raise Damaged(f"chunk {hexid}: does not decrypt")
    if flags & 1:
        try:
            body = zstandard.ZstdDecompressor().decompress(body, max_output_size=length)
        except zstandard.ZstdError as e:
            raise Damaged(f"chunk {hexid}: zstd: {e}")
    got = (hmac.new(ID_KEY, body, hashlib.sha256).digest() if ID_KEY is not None
           else hashlib.sha256(body).digest())
    if len(body) != length or got != cid:
        raise Damaged(f"chunk {hexid}: damaged: its bytes do not have its id")
    return body


def chunk_len(capacity, i):
    return min(CHUNK, capacity - i * CHUNK)


def list_points(repo, rule=None, vm=None):
    base = os.path.join(repo, "points")
    rules = [rule] if rule else sorted(os.listdir(base)) if os.path.isdir(base) else []
    for r in rules:
        rdir = os.path.join(base, r)
        vms = [vm] if vm else sorted(os.listdir(rdir)) if os.path.isdir(rdir) else []
        for v in vms:
            vdir = os.path.join(rdir, v)
            if not os.path.isdir(vdir):
                continue
            seqs = sorted(int(s) for s in os.listdir(vdir) if re.fullmatch(r"[1-9][0-9]*", s))
            for s in seqs:
                yield r, v, s


def main(argv):
    global KEY_FILE
    if len(argv) > 2 and argv[1] == "--key":
        KEY_FILE = argv[2]
        argv = argv[:1] + argv[3:]
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    repo, cmd, args = argv[1], argv[2], argv[3:]
    try:
        read_repo_json(repo)
        if cmd == "points" and len(args) <= 2:
            for r, v, s in list_points(repo, *args):
                print(f"{r}/{v}/{s}")
        elif cmd == "manifest" and len(args) == 3:
            m = read_manifest(repo, args[0], args[1], int(args[2]))
            print(json.dumps(m, indent=2, sort_keys=True))
        elif cmd == "check" and len(args) == 3:
            rule, vm, seq = args[0], args[1], int(args[2])
            m = read_manifest(repo, rule, vm, seq)
            count = 0
            for n, disk in enumerate(m["disks"]):
                capacity, ids = read_index(repo, rule, vm, seq, n, disk)
                for i, cid in enumerate(ids):
                    read_chunk(repo, cid, chunk_len(capacity, i))
                    count += 1
            print(f"{rule}/{vm}/{seq}: {len(m['disks'])} disks, {count} chunks, all ids match")
        elif cmd == "ids" and len(args) == 3:
            rule, vm, seq = args[0], args[1], int(args[2])
            m = read_manifest(repo, rule, vm, seq)
            for n, disk in enumerate(m["disks"]):
                capacity, ids = read_index(repo, rule, vm, seq, n, disk)
                for i, cid in enumerate(ids):
                    print(f"{n} {i} {cid.hex()}")
        elif cmd == "chunks" and len(args) <= 3:
            ids = set()
            points = ([(args[0], args[1], int(args[2]))] if len(args) == 3
                      else list_points(repo, *args))
            for rule, vm, seq in points:
                m = read_manifest(repo, rule, vm, seq)
                for n, disk in enumerate(m["disks"]):
                    ids.update(cid for cid in read_index(repo, rule, vm, seq, n, disk)[1] if cid != ZERO_ID)
            for cid in sorted(ids):
                print(cid.hex())
        elif cmd == "image" and len(args) == 5:
            rule, vm, seq, n, out = args[0], args[1], int(args[2]), int(args[3]), args[4]
            m = read_manifest(repo, rule, vm, seq)
            if not 0 <= n < len(m["disks"]):
                raise Damaged(f"{rule}/{vm}/{seq} has no disk {n}")
            capacity, ids = read_index(repo, rule, vm, seq, n, m["disks"][n])
            with open(out, "wb") as f:
                for i, cid in enumerate(ids):
                    if cid == ZERO_ID:
                        continue  # a hole: the file is cut to the capacity below
                    f.seek(i * CHUNK)
                    f.write(read_chunk(repo, cid, chunk_len(capacity, i)))
                f.truncate(capacity)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (Damaged, OSError, ValueError, KeyError, TypeError) as e:
        print(f"repo_read: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
