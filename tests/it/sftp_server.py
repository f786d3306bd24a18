#!/usr/bin/env python3
"""A hostile SFTP server for ssh-dial's tests, run by sshd as the `sftp`
subsystem: `sftp_server.py MODE ROOT`. It serves files under ROOT (a
path is taken as given: the tests give absolute ones) and misbehaves as
MODE says:

  silent      never answers, not even INIT
  mute        answers INIT, then nothing
  half        answers every other request, never the rest
  oversize    answers INIT, then sends a packet header claiming 100 MiB
              and zeros for as long as it is read
  duplicates  answers everything, and after each reply sends 64 copies of
              it (replies to requests already answered)
  spew        answers the first request, then sends copies of that reply
              for as long as they are read
  endless     answers everything; a directory listing never ends (each
              READDIR gets 1,000 more names)
  short       answers everything, each read with a random part of what
              was asked (at least one byte), replies in shuffled order
              (up to 8 held back while requests keep coming)

It ends at EOF on stdin, as sftp-server does when its channel closes."""

import os
import random
import select
import struct
import sys

MODE, ROOT = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "/"
rng = random.Random(int(os.environ.get("SFTP_SEED", "7")))
buf = b""
handles = {}
next_handle = 0
held = []
count = 0


def read_exact(n):
    global buf
    while len(buf) < n:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            sys.exit(0)
        buf += chunk
    out, buf = buf[:n], buf[n:]
    return out


def send(data):
    view = memoryview(data)
    while view:
        n = os.write(1, view)
        view = view[n:]


def packet(kind, payload):
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def string(b):
    return struct.pack(">I", len(b)) + b


def status(rid, code, msg=b""):
    return packet(101, struct.pack(">II", rid, code) + string(msg) + string(b""))


def attrs(st):
    return struct.pack(">IQIIIII", 0xF, st.st_size, st.st_uid, st.st_gid,
                       st.st_mode, int(st.st_atime), int(st.st_mtime))


def parse_string(p, at):
    (n,) = struct.unpack(">I", p[at:at + 4])
    return p[at + 4:at + 4 + n], at + 4 + n


def answer(kind, p):
    global next_handle
    (rid,) = struct.unpack(">I", p[:4])
    p = p[4:]
    try:
        if kind == 3:  # OPEN
            path, at = parse_string(p, 0)
            (pflags,) = struct.unpack(">I", p[at:at + 4])
            flags = 0
            if pflags & 1 and pflags & 2:
                flags = os.O_RDWR
            elif pflags & 2:
                flags = os.O_WRONLY
            if pflags & 8:
                flags |= os.O_CREAT
            if pflags & 0x10:
                flags |= os.O_TRUNC
            fd = os.open(path, flags, 0o644)
            next_handle += 1
            h = str(next_handle).encode()
            handles[h] = fd
            return packet(102, struct.pack(">I", rid) + string(h))
        if kind == 4:  # CLOSE
            h, _ = parse_string(p, 0)
            fd = handles.pop(h, None)
            if fd is not None:
                os.close(fd)
            return status(rid, 0)
        if kind == 5:  # READ
            h, at = parse_string(p, 0)
            off, n = struct.unpack(">QI", p[at:at + 12])
            if MODE == "short" and n > 1:
                n = rng.randint(1, n)
            data = os.pread(handles[h], n, off)
            if not data:
                return status(rid, 1, b"EOF")
            return packet(103, struct.pack(">I", rid) + string(data))
        if kind == 6:  # WRITE
            h, at = parse_string(p, 0)
            (off,) = struct.unpack(">Q", p[at:at + 8])
            data, _ = parse_string(p, at + 8)
            os.pwrite(handles[h], data, off)
            return status(rid, 0)
        if kind == 8:  # FSTAT
            h, _ = parse_string(p, 0)
            return packet(105, struct.pack(">I", rid) + attrs(os.fstat(handles[h])))
        if kind in (7, 17):  # LSTAT, STAT
            path, _ = parse_string(p, 0)
            st = os.lstat(path) if kind == 7 else os.stat(path)
            return packet(105, struct.pack(">I", rid) + attrs(st))
        if kind == 11:  # OPENDIR
            next_handle += 1
            h = ("d%d" % next_handle).encode()
            return packet(102, struct.pack(">I", rid) + string(h))
        if kind == 12 and MODE == "endless":  # READDIR
            names = b"".join(string(b"f%d" % i) + string(b"-rw-r--r-- f%d" % i)
                             + struct.pack(">I", 0) for i in range(1000))
            return packet(104, struct.pack(">II", rid, 1000) + names)
        if kind == 16:  # REALPATH
            path, _ = parse_string(p, 0)
            name = os.path.realpath(path)
            return packet(104, struct.pack(">II", rid, 1) + string(name) + string(name)
                          + struct.pack(">I", 0))
        return status(rid, 8, b"unsupported")
    except FileNotFoundError:
        return status(rid, 2, b"No such file")
    except OSError as e:
        return status(rid, 4, str(e).encode())


def flush_held(all_of_them):
    while held and (all_of_them or len(held) > 8):
        send(held.pop(rng.randrange(len(held))))


def main():
    global count
    (n,) = struct.unpack(">I", read_exact(4))
    read_exact(n)  # INIT
    if MODE == "silent":
        while True:
            read_exact(1)
    send(packet(2, struct.pack(">I", 3)))
    while True:
        if MODE == "short" and held and not buf:
            ready, _, _ = select.select([0], [], [], 0)
            if not ready:
                flush_held(True)
        (n,) = struct.unpack(">I", read_exact(4))
        p = read_exact(n)
        count += 1
        if MODE == "mute":
            continue
        if MODE == "oversize":
            send(struct.pack(">I", 100 << 20))
            while True:
                send(b"\0" * 65536)
        if MODE == "half" and count % 2 == 0:
            continue
        reply = answer(p[0], p[1:])
        if MODE == "spew":
            while True:
                send(reply * 256)
        if MODE == "duplicates":
            send(reply * 65)
        elif MODE == "short":
            held.append(reply)
            flush_held(False)
        else:
            send(reply)


main()
