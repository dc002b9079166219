#!/usr/bin/env python3
"""A guest's client in the egressd lab (run inside a guest namespace). Standard library only.

    lab-client.py tcp|udp ADDR PORT N HOLD_SECONDS [--bind SRC] [--timeout S] [--reset]
        Opens N connections (TCP) or connected sockets (UDP, one datagram each), one after another,
        and keeps all of them open together for HOLD_SECONDS, then closes them (TCP: with a FIN, or with
        --reset a RST: SO_LINGER 0). Prints one line per connection as soon
        as it is known:  "ok <seen ip> <seen port>"  or  "fail <errno name>"  (ETIMEDOUT on timeout),
        where seen ip/port are what the destination saw. Opening them one after another makes the
        N+1-th connection under a cap of N the one that is refused.
    lab-client.py hold ADDR PORT SECONDS [--bind SRC] [--timeout S]
        One TCP connection: prints "ok <seen ip> <seen port>", then every 0.2 s sends a line and prints
        the answer as "echo <seen ip> <seen port>" (or "fail <errno name>" and stops); "done" at the end.
    lab-client.py bulk ADDR PORT BYTES [--bind SRC] [--timeout S]
        One TCP connection to the destination's echo service: sends BYTES and reads them back, checking
        every byte. Prints "bulk <bytes echoed> <local ip> <local port>" or "fail <errno name>".
    lab-client.py probe udp|tcp ADDR PORT SECONDS INTERVAL_MS [--timeout S]
        Every INTERVAL_MS a probe: UDP, one datagram on one connected socket (the same source port
        throughout); TCP, a new connection that reads the greeting. Prints per answered probe
        "r <ms since start> <seen ip> <seen port>", then "done <sent> <answered> <ms since start>" (also
        when ended early by SIGTERM).
"""
import errno
import signal
import threading
import socket
import struct
import sys
import time


def errname(e):
    if isinstance(e, socket.timeout):
        return "ETIMEDOUT"
    if isinstance(e, OSError) and e.errno in errno.errorcode:
        return errno.errorcode[e.errno]
    return type(e).__name__


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(256)
        if not chunk:
            raise ConnectionResetError(errno.ECONNRESET, "closed by peer")
        buf += chunk
    return buf.decode().strip()


def out(line):
    print(line, flush=True)


def open_one(proto, addr, port, bind, timeout):
    s = socket.socket(family_of(addr), socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(timeout)
    if bind:
        s.bind((bind, 0))
    try:
        s.connect((addr, port))
        if proto == "udp":
            s.send(b"hello\n")
            data = s.recv(256).decode().strip()
        else:
            data = read_line(s)
        out("ok " + data)
    except (OSError, socket.timeout) as e:
        out("fail " + errname(e))
    return s


def main():
    argv = sys.argv[1:]
    bind, timeout, reset = None, 2.0, False
    rest = []
    i = 0
    while i < len(argv):
        if argv[i] == "--bind":
            bind = argv[i + 1]
            i += 2
        elif argv[i] == "--timeout":
            timeout = float(argv[i + 1])
            i += 2
        elif argv[i] == "--reset":
            reset = True
            i += 1
        else:
            rest.append(argv[i])
            i += 1
    if len(rest) >= 5 and rest[0] in ("tcp", "udp"):
        proto, addr, port, n, hold = rest[0], rest[1], int(rest[2]), int(rest[3]), float(rest[4])
        socks = [open_one(proto, addr, port, bind, timeout) for _ in range(n)]
        time.sleep(hold)
        for s in socks:
            if reset and proto == "tcp":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    elif len(rest) >= 4 and rest[0] == "hold":
        addr, port, seconds = rest[1], int(rest[2]), float(rest[3])
        s = socket.socket(family_of(addr), socket.SOCK_STREAM)
        s.settimeout(timeout)
        if bind:
            s.bind((bind, 0))
        try:
            s.connect((addr, port))
            out("ok " + read_line(s))
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(0.2)
                s.sendall(b"ping\n")
                out("echo " + read_line(s))
        except (OSError, socket.timeout) as e:
            out("fail " + errname(e))
        s.close()
        out("done")
    elif len(rest) >= 4 and rest[0] == "bulk":
        addr, port, size = rest[1], int(rest[2]), int(rest[3])
        payload = bytes((i * 7 + 13) % 251 for i in range(size))
        s = socket.socket(family_of(addr), socket.SOCK_STREAM)
        s.settimeout(timeout)
        if bind:
            s.bind((bind, 0))
        try:
            s.connect((addr, port))
            sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
            sender.start()
            got = bytearray()
            while len(got) < size:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionResetError(errno.ECONNRESET, "closed by peer")
                got += chunk
            if bytes(got) != payload:
                out("fail ECORRUPT")
            else:
                local = s.getsockname()
                out("bulk %d %s %d" % (len(got), local[0], local[1]))
        except (OSError, socket.timeout) as e:
            out("fail " + errname(e))
        s.close()
    elif len(rest) >= 6 and rest[0] == "probe":
        proto, addr, port, seconds, interval = rest[1], rest[2], int(rest[3]), float(rest[4]), float(rest[5]) / 1000
        start = time.monotonic()
        sent = answered = 0
        u = None
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
        if proto == "udp":
            u = socket.socket(family_of(addr), socket.SOCK_DGRAM)
            u.connect((addr, port))
            u.setblocking(False)
        nxt = start
        while time.monotonic() - start < seconds and not stopping:
            if proto == "udp":
                try:
                    u.send(b"probe\n")
                    sent += 1
                except OSError:
                    pass
                deadline = nxt + interval
                while time.monotonic() < deadline:
                    try:
                        u.settimeout(max(0.001, deadline - time.monotonic()))
                        data = u.recv(256).decode().split()
                        answered += 1
                        out("r %d %s %s" % ((time.monotonic() - start) * 1000, data[0], data[1]))
                    except (OSError, socket.timeout, IndexError):
                        pass
            else:
                sent += 1
                s = socket.socket(family_of(addr), socket.SOCK_STREAM)
                s.settimeout(max(interval, 0.5))
                try:
                    s.connect((addr, port))
                    data = read_line(s).split()
                    answered += 1
                    out("r %d %s %s" % ((time.monotonic() - start) * 1000, data[0], data[1]))
                except (OSError, socket.timeout):
                    pass
                s.close()
            nxt += interval
            time.sleep(max(0, nxt - time.monotonic()))
        out("done %d %d %d" % (sent, answered, (time.monotonic() - start) * 1000))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
