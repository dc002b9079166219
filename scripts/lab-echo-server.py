#!/usr/bin/env python3
"""The destination of the egressd lab: tells every peer which address and port it came from.

    lab-echo-server.py LOGFILE [--tcp 80,81] [--udp 5000] [--echo 82]

Runs in the lab's dst namespace, listening on every address (IPv4 and IPv6):
  * TCP: on accept, sends "<peer ip> <peer port>\\n"; then answers each line it receives with the same
    text; the connection stays open until the client closes it (so tests can hold N connections).
  * UDP: answers each datagram with "<peer ip> <peer port>\\n".
  * echo (TCP): sends back every byte it receives, as it comes (bulk transfers, path MTU discovery).
Each TCP connection and each UDP datagram appends one line to LOGFILE:
    <proto> <peer ip> <peer port> <local ip> <local port>
so a test can check everything the destination ever saw. Prints "ready" once every socket listens.
Standard library only.
"""
import socket
import sys
import threading

log_lock = threading.Lock()
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # linux/in.h; missing from some Python builds


def plain(ip):
    return ip[7:] if ip.startswith("::ffff:") else ip


def log(path, proto, peer, local):
    line = "%s %s %d %s %d\n" % (proto, plain(peer[0]), peer[1], plain(local[0]), local[1])
    with log_lock:
        with open(path, "a") as f:
            f.write(line)
            f.flush()


def serve_conn(conn, peer, path):
    try:
        local = conn.getsockname()
        log(path, "tcp", peer, local)
        greeting = ("%s %d\n" % (plain(peer[0]), peer[1])).encode()
        conn.sendall(greeting)
        buf = b""
        while True:
            data = conn.recv(4096)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                _, buf = buf.split(b"\n", 1)
                conn.sendall(greeting)
    except OSError:
        pass
    finally:
        conn.close()


def serve_echo(conn, peer, path):
    try:
        log(path, "tcp", peer, conn.getsockname())
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
    except OSError:
        pass
    finally:
        conn.close()


def tcp_listener(family, port, path, serve=serve_conn):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    s.listen(4096)

    def loop():
        while True:
            conn, peer = s.accept()
            threading.Thread(target=serve, args=(conn, peer, path), daemon=True).start()

    return loop


def udp_listener(family, port, path):
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))

    def loop():
        while True:
            data, anc, _, peer = s.recvmsg(4096, 1024)
            local_ip = "?"
            for level, kind, value in anc:
                if family == socket.AF_INET and kind == IP_PKTINFO:
                    local_ip = socket.inet_ntop(socket.AF_INET, value[8:12])
                elif family == socket.AF_INET6 and kind == socket.IPV6_PKTINFO:
                    local_ip = socket.inet_ntop(socket.AF_INET6, value[0:16])
            log(path, "udp", peer, (local_ip, port))
            reply = ("%s %d\n" % (plain(peer[0]), peer[1])).encode()
            # answer from the address the datagram was sent to
            anc_out = []
            if family == socket.AF_INET:
                # struct in_pktinfo { int ifindex; in_addr spec_dst (the source); in_addr addr; }
                anc_out = [(socket.IPPROTO_IP, IP_PKTINFO,
                            b"\0" * 4 + socket.inet_pton(socket.AF_INET, local_ip) + b"\0" * 4)] if local_ip != "?" else []
            else:
                anc_out = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
                            socket.inet_pton(socket.AF_INET6, local_ip) + b"\0" * 4)] if local_ip != "?" else []
            try:
                s.sendmsg([reply], anc_out, 0, peer)
            except OSError:
                pass

    return loop


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit("usage: lab-echo-server.py LOGFILE [--tcp 80,81] [--udp 5000] [--echo 82]")
    path = args[0]
    tcp_ports, udp_ports, echo_ports = [80, 81], [5000], [82]
    i = 1
    while i < len(args):
        if args[i] == "--tcp":
            tcp_ports = [int(p) for p in args[i + 1].split(",")]
        elif args[i] == "--udp":
            udp_ports = [int(p) for p in args[i + 1].split(",")]
        elif args[i] == "--echo":
            echo_ports = [int(p) for p in args[i + 1].split(",")]
        else:
            sys.exit("unknown argument " + args[i])
        i += 2
    open(path, "a").close()
    loops = []
    for family in (socket.AF_INET, socket.AF_INET6):
        loops += [tcp_listener(family, p, path) for p in tcp_ports]
        loops += [udp_listener(family, p, path) for p in udp_ports]
        loops += [tcp_listener(family, p, path, serve_echo) for p in echo_ports]
    for loop in loops:
        threading.Thread(target=loop, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
