# Test fixture: lists "ADDRESS PREFIXLEN PROTO" for every address on one interface, read with a raw
# RTM_GETADDR dump, so tests can check IFA_PROTO independently of egressd's own parser. (iproute2 6.1,
# this machine's, neither sets nor prints an address protocol; later versions print it as "protocol".)
# Layouts from <linux/netlink.h> (nlmsghdr, nlattr) and <linux/if_addr.h> (ifaddrmsg, IFA_*).
import socket
import struct
import sys

IFA_ADDRESS, IFA_LOCAL, IFA_PROTO = 1, 2, 11
RTM_NEWADDR, RTM_GETADDR, NLMSG_ERROR, NLMSG_DONE = 20, 22, 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300

index = socket.if_nametoindex(sys.argv[1])
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
s.bind((0, 0))
body = struct.pack("=BBBBI", 0, 0, 0, 0, 0)
s.send(struct.pack("=IHHII", 16 + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
done = False
while not done:
    data = s.recv(1 << 16)
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if kind == NLMSG_DONE:
            done = True
            break
        if kind == NLMSG_ERROR:
            sys.exit("netlink error %d" % struct.unpack_from("=i", data, off + 16))
        if kind == RTM_NEWADDR:
            family, prefixlen, _, _, ifindex = struct.unpack_from("=BBBBI", data, off + 16)
            attrs = {}
            a = off + 24
            while a + 4 <= off + length:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                attrs[atype & 0x3FFF] = data[a + 4:a + alen]
                a += (alen + 3) & ~3
            if ifindex == index:
                raw = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
                proto = attrs[IFA_PROTO][0] if IFA_PROTO in attrs else 0
                print(socket.inet_ntop(socket.AF_INET if family == 2 else socket.AF_INET6, raw), prefixlen, proto)
        off += (length + 3) & ~3
