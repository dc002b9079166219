package dev.egressd.agent.netlink;

/**
 * The netlink numbers egressd uses, copied from the kernel UAPI headers; each names its header.
 * {@code NetlinkConstantsTest} pins the values and, where {@code /usr/include/linux} exists,
 * re-reads them from the headers so a typo cannot survive.
 */
public final class NetlinkConstants
{
    private NetlinkConstants()
    {
    }

    // ---- <linux/netlink.h> --------------------------------------------------------------------

    /** {@code <linux/netlink.h>} sizeof(struct nlmsghdr). */
    public static final int NLMSG_HDRLEN = 16;
    /** {@code <linux/netlink.h>} NLMSG_ALIGNTO (also NLA_ALIGNTO). */
    public static final int NLMSG_ALIGNTO = 4;
    /** {@code <linux/netlink.h>} sizeof(struct nlattr). */
    public static final int NLA_HDRLEN = 4;
    /** {@code <linux/netlink.h>} sizeof(struct sockaddr_nl). */
    public static final int SOCKADDR_NL_SIZE = 12;

    /** {@code <linux/netlink.h>} NLM_F_REQUEST: it is a request message. */
    public static final int NLM_F_REQUEST = 0x01;
    /** {@code <linux/netlink.h>} NLM_F_MULTI: multipart message, terminated by NLMSG_DONE. */
    public static final int NLM_F_MULTI = 0x02;
    /** {@code <linux/netlink.h>} NLM_F_ACK: reply with ack, with zero or error code. */
    public static final int NLM_F_ACK = 0x04;
    /** {@code <linux/netlink.h>} NLM_F_ECHO. */
    public static final int NLM_F_ECHO = 0x08;
    /** {@code <linux/netlink.h>} NLM_F_DUMP_INTR: dump was inconsistent due to sequence change. */
    public static final int NLM_F_DUMP_INTR = 0x10;
    /** {@code <linux/netlink.h>} NLM_F_ROOT (GET). */
    public static final int NLM_F_ROOT = 0x100;
    /** {@code <linux/netlink.h>} NLM_F_MATCH (GET). */
    public static final int NLM_F_MATCH = 0x200;
    /** {@code <linux/netlink.h>} NLM_F_DUMP = NLM_F_ROOT|NLM_F_MATCH. */
    public static final int NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
    /** {@code <linux/netlink.h>} NLM_F_REPLACE (NEW): override existing. */
    public static final int NLM_F_REPLACE = 0x100;
    /** {@code <linux/netlink.h>} NLM_F_EXCL (NEW): do not touch, if it exists. */
    public static final int NLM_F_EXCL = 0x200;
    /** {@code <linux/netlink.h>} NLM_F_CREATE (NEW): create, if it does not exist. */
    public static final int NLM_F_CREATE = 0x400;
    /** {@code <linux/netlink.h>} NLM_F_CAPPED (ACK): the request was not echoed (NETLINK_CAP_ACK). */
    public static final int NLM_F_CAPPED = 0x100;
    /** {@code <linux/netlink.h>} NLM_F_ACK_TLVS (ACK): extended ack TLVs follow. */
    public static final int NLM_F_ACK_TLVS = 0x200;

    /** {@code <linux/netlink.h>} NLMSG_NOOP. */
    public static final int NLMSG_NOOP = 0x1;
    /** {@code <linux/netlink.h>} NLMSG_ERROR (also the ack, with error 0). */
    public static final int NLMSG_ERROR = 0x2;
    /** {@code <linux/netlink.h>} NLMSG_DONE: end of a dump. */
    public static final int NLMSG_DONE = 0x3;
    /** {@code <linux/netlink.h>} NLMSG_OVERRUN. */
    public static final int NLMSG_OVERRUN = 0x4;

    /** {@code <linux/netlink.h>} NLMSGERR_ATTR_MSG: extended ack error text. */
    public static final int NLMSGERR_ATTR_MSG = 1;

    /** {@code <linux/netlink.h>} NETLINK_ADD_MEMBERSHIP (socket option, SOL_NETLINK). */
    public static final int NETLINK_ADD_MEMBERSHIP = 1;
    /** {@code <linux/netlink.h>} NETLINK_DROP_MEMBERSHIP. */
    public static final int NETLINK_DROP_MEMBERSHIP = 2;
    /** {@code <linux/netlink.h>} NETLINK_NO_ENOBUFS. */
    public static final int NETLINK_NO_ENOBUFS = 5;
    /** {@code <linux/netlink.h>} NETLINK_CAP_ACK: acks do not echo the request. */
    public static final int NETLINK_CAP_ACK = 10;
    /** {@code <linux/netlink.h>} NETLINK_EXT_ACK: errors carry a text (NLMSGERR_ATTR_MSG). */
    public static final int NETLINK_EXT_ACK = 11;

    /** {@code <linux/netlink.h>} NLA_F_NESTED. */
    public static final int NLA_F_NESTED = 1 << 15;
    /** {@code <linux/netlink.h>} NLA_F_NET_BYTEORDER. */
    public static final int NLA_F_NET_BYTEORDER = 1 << 14;
    /** {@code <linux/netlink.h>} NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER), as a 16-bit mask. */
    public static final int NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF;

    // ---- <linux/rtnetlink.h> ------------------------------------------------------------------

    /** {@code <linux/rtnetlink.h>} RTM_NEWLINK. */
    public static final int RTM_NEWLINK = 16;
    /** {@code <linux/rtnetlink.h>} RTM_GETLINK. */
    public static final int RTM_GETLINK = 18;
    /** {@code <linux/rtnetlink.h>} RTM_NEWADDR. */
    public static final int RTM_NEWADDR = 20;
    /** {@code <linux/rtnetlink.h>} RTM_DELADDR. */
    public static final int RTM_DELADDR = 21;
    /** {@code <linux/rtnetlink.h>} RTM_GETADDR. */
    public static final int RTM_GETADDR = 22;
    /** {@code <linux/rtnetlink.h>} RTM_NEWROUTE. */
    public static final int RTM_NEWROUTE = 24;
    /** {@code <linux/rtnetlink.h>} RTM_DELROUTE. */
    public static final int RTM_DELROUTE = 25;
    /** {@code <linux/rtnetlink.h>} RTM_GETROUTE. */
    public static final int RTM_GETROUTE = 26;
    /** {@code <linux/rtnetlink.h>} RTM_NEWRULE. */
    public static final int RTM_NEWRULE = 32;
    /** {@code <linux/rtnetlink.h>} RTM_DELRULE. */
    public static final int RTM_DELRULE = 33;
    /** {@code <linux/rtnetlink.h>} RTM_GETRULE. */
    public static final int RTM_GETRULE = 34;
    /** {@code <linux/rtnetlink.h>} RT_SCOPE_UNIVERSE (global). */
    public static final int RT_SCOPE_UNIVERSE = 0;
    /** {@code <linux/rtnetlink.h>} RT_SCOPE_NOWHERE: on RTM_DELROUTE, "any scope". */
    public static final int RT_SCOPE_NOWHERE = 255;
    /** {@code <linux/rtnetlink.h>} sizeof(struct rtmsg). */
    public static final int RTMSG_SIZE = 12;
    /** {@code <linux/rtnetlink.h>} RTN_UNSPEC: on RTM_DELROUTE, "any type". */
    public static final int RTN_UNSPEC = 0;
    /** {@code <linux/rtnetlink.h>} RTN_UNICAST: a gateway or direct route. */
    public static final int RTN_UNICAST = 1;
    /** {@code <linux/rtnetlink.h>} RTPROT_UNSPEC: on RTM_DELROUTE, "any protocol". */
    public static final int RTPROT_UNSPEC = 0;
    /** {@code <linux/rtnetlink.h>} RTPROT_KERNEL: a route the kernel made (connected routes). */
    public static final int RTPROT_KERNEL = 2;
    /** {@code <linux/rtnetlink.h>} RTPROT_BOOT: what {@code ip route add} and {@code ip rule add} set. */
    public static final int RTPROT_BOOT = 3;
    /** {@code <linux/rtnetlink.h>} RTPROT_STATIC: a route the administrator made. */
    public static final int RTPROT_STATIC = 4;
    /**
     * egressd's own route and rule protocol (rtm_protocol, FRA_PROTOCOL), not from any header: the same number as
     * {@link #IFAPROT_EGRESSD}, so one value marks everything egressd puts into the kernel's routing. Values above
     * RTPROT_STATIC are not interpreted by the kernel; {@code <linux/rtnetlink.h>} and iproute2's rt_protos name
     * 8..18, 42, 99 and 186..192, so 0xE5 (229) is free. {@code ip route} shows it as {@code proto 229}.
     */
    public static final int RTPROT_EGRESSD = 0xE5;
    /** {@code <linux/rtnetlink.h>} RT_TABLE_UNSPEC: in struct rtmsg / fib_rule_hdr when RTA_TABLE / FRA_TABLE says. */
    public static final int RT_TABLE_UNSPEC = 0;
    /** {@code <linux/rtnetlink.h>} RT_TABLE_DEFAULT. */
    public static final int RT_TABLE_DEFAULT = 253;
    /** {@code <linux/rtnetlink.h>} RT_TABLE_MAIN. */
    public static final int RT_TABLE_MAIN = 254;
    /** {@code <linux/rtnetlink.h>} RT_TABLE_LOCAL. */
    public static final int RT_TABLE_LOCAL = 255;
    /** {@code <linux/rtnetlink.h>} RTA_DST. */
    public static final int RTA_DST = 1;
    /** {@code <linux/rtnetlink.h>} RTA_OIF. */
    public static final int RTA_OIF = 4;
    /** {@code <linux/rtnetlink.h>} RTA_GATEWAY. */
    public static final int RTA_GATEWAY = 5;
    /** {@code <linux/rtnetlink.h>} RTA_PRIORITY (the route metric). */
    public static final int RTA_PRIORITY = 6;
    /** {@code <linux/rtnetlink.h>} RTA_MULTIPATH. */
    public static final int RTA_MULTIPATH = 9;
    /** {@code <linux/rtnetlink.h>} RTA_TABLE: u32 table id, which struct rtmsg's u8 cannot hold above 255. */
    public static final int RTA_TABLE = 15;
    /** {@code <linux/rtnetlink.h>} sizeof(struct ifinfomsg). */
    public static final int IFINFOMSG_SIZE = 16;

    // ---- <linux/fib_rules.h> ------------------------------------------------------------------

    /** {@code <linux/fib_rules.h>} sizeof(struct fib_rule_hdr). */
    public static final int FIB_RULE_HDR_SIZE = 12;
    /** {@code <linux/fib_rules.h>} FIB_RULE_INVERT (fib_rule_hdr.flags): {@code ip rule add not ...}. */
    public static final int FIB_RULE_INVERT = 0x2;
    /** {@code <linux/fib_rules.h>} FRA_IIFNAME (input interface selector). */
    public static final int FRA_IIFNAME = 3;
    /** {@code <linux/fib_rules.h>} FRA_OIFNAME (output interface selector). */
    public static final int FRA_OIFNAME = 17;
    /** {@code <linux/fib_rules.h>} FRA_PRIORITY (u32 preference). */
    public static final int FRA_PRIORITY = 6;
    /** {@code <linux/fib_rules.h>} FRA_FWMARK (u32). */
    public static final int FRA_FWMARK = 10;
    /** {@code <linux/fib_rules.h>} FRA_TABLE (u32 table id, for tables above 255). */
    public static final int FRA_TABLE = 15;
    /** {@code <linux/fib_rules.h>} FRA_FWMASK (u32). */
    public static final int FRA_FWMASK = 16;
    /** {@code <linux/fib_rules.h>} FRA_PROTOCOL (u8, who made the rule). */
    public static final int FRA_PROTOCOL = 21;
    /** {@code <linux/fib_rules.h>} FR_ACT_TO_TBL: look up in a table. */
    public static final int FR_ACT_TO_TBL = 1;

    // ---- <linux/if_link.h> --------------------------------------------------------------------

    /** {@code <linux/if_link.h>} IFLA_IFNAME. */
    public static final int IFLA_IFNAME = 3;
    /** {@code <linux/if.h>} IFNAMSIZ (name plus NUL). */
    public static final int IFNAMSIZ = 16;

    // ---- <linux/if_addr.h> --------------------------------------------------------------------

    /** {@code <linux/if_addr.h>} sizeof(struct ifaddrmsg). */
    public static final int IFADDRMSG_SIZE = 8;
    /** {@code <linux/if_addr.h>} IFA_ADDRESS. */
    public static final int IFA_ADDRESS = 1;
    /** {@code <linux/if_addr.h>} IFA_LOCAL. */
    public static final int IFA_LOCAL = 2;
    /** {@code <linux/if_addr.h>} IFA_LABEL. */
    public static final int IFA_LABEL = 3;
    /** {@code <linux/if_addr.h>} IFA_CACHEINFO (struct ifa_cacheinfo). */
    public static final int IFA_CACHEINFO = 6;
    /** {@code <linux/if_addr.h>} IFA_FLAGS: u32 that supersedes ifaddrmsg.ifa_flags. */
    public static final int IFA_FLAGS = 8;
    /**
     * {@code <linux/if_addr.h>} IFA_PROTO: u8, the "address protocol", i.e. who put the address there
     * (kernel 6.1 and later; older kernels ignore it on add and never report it).
     */
    public static final int IFA_PROTO = 11;
    /** {@code <linux/if_addr.h>} IFAPROT_UNSPEC: no protocol given (what {@code ip addr add} sets). */
    public static final int IFAPROT_UNSPEC = 0;
    /** {@code <linux/if_addr.h>} IFAPROT_KERNEL_LO: the kernel's loopback address. */
    public static final int IFAPROT_KERNEL_LO = 1;
    /** {@code <linux/if_addr.h>} IFAPROT_KERNEL_RA: set by the kernel from a router advertisement. */
    public static final int IFAPROT_KERNEL_RA = 2;
    /** {@code <linux/if_addr.h>} IFAPROT_KERNEL_LL: link-local set by the kernel. */
    public static final int IFAPROT_KERNEL_LL = 3;
    /**
     * egressd's own IFA_PROTO value, not from any header: it marks the uplink addresses egressd added,
     * so it removes only those (Cilium's rule: touch only what you own). {@code <linux/if_addr.h>}
     * defines 0..3 (unspecified and the kernel's own); any other u8 is free for a user-space owner, and
     * 0xE5 is far from both ends. The kernel stores it and reports it back, nothing more.
     */
    public static final int IFAPROT_EGRESSD = 0xE5;
    /** {@code <linux/if_addr.h>} IFA_F_NODAD. */
    public static final int IFA_F_NODAD = 0x02;
    /** {@code <linux/if_addr.h>} IFA_F_DADFAILED. */
    public static final int IFA_F_DADFAILED = 0x08;
    /** {@code <linux/if_addr.h>} IFA_F_DEPRECATED (preferred lifetime over). */
    public static final int IFA_F_DEPRECATED = 0x20;
    /** {@code <linux/if_addr.h>} IFA_F_TENTATIVE. */
    public static final int IFA_F_TENTATIVE = 0x40;
    /** {@code <linux/if_addr.h>} IFA_F_PERMANENT. */
    public static final int IFA_F_PERMANENT = 0x80;
    /** {@code <linux/if_addr.h>} IFA_F_NOPREFIXROUTE. */
    public static final int IFA_F_NOPREFIXROUTE = 0x200;
    /** {@code <linux/if_addr.h>} sizeof(struct ifa_cacheinfo): prefered, valid, cstamp, tstamp (u32 each). */
    public static final int IFA_CACHEINFO_SIZE = 16;
    /** Kernel {@code include/net/addrconf.h} INFINITY_LIFE_TIME (not in UAPI): lifetime "forever". */
    public static final int INFINITY_LIFE_TIME = 0xFFFFFFFF;

    // ---- <linux/netfilter/nfnetlink.h> --------------------------------------------------------

    /** {@code <linux/netfilter/nfnetlink.h>} sizeof(struct nfgenmsg). */
    public static final int NFGENMSG_SIZE = 4;
    /** {@code <linux/netfilter/nfnetlink.h>} NFNETLINK_V0. */
    public static final int NFNETLINK_V0 = 0;
    /** {@code <linux/netfilter/nfnetlink.h>} NFNL_SUBSYS_CTNETLINK. */
    public static final int NFNL_SUBSYS_CTNETLINK = 1;
    /** {@code <linux/netfilter/nfnetlink.h>} NFNLGRP_CONNTRACK_NEW. */
    public static final int NFNLGRP_CONNTRACK_NEW = 1;
    /** {@code <linux/netfilter/nfnetlink.h>} NFNLGRP_CONNTRACK_UPDATE. */
    public static final int NFNLGRP_CONNTRACK_UPDATE = 2;
    /** {@code <linux/netfilter/nfnetlink.h>} NFNLGRP_CONNTRACK_DESTROY. */
    public static final int NFNLGRP_CONNTRACK_DESTROY = 3;

    // ---- <linux/netfilter/nfnetlink_conntrack.h> ----------------------------------------------

    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} IPCTNL_MSG_CT_NEW. */
    public static final int IPCTNL_MSG_CT_NEW = 0;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} IPCTNL_MSG_CT_GET. */
    public static final int IPCTNL_MSG_CT_GET = 1;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} IPCTNL_MSG_CT_DELETE. */
    public static final int IPCTNL_MSG_CT_DELETE = 2;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_TUPLE_ORIG. */
    public static final int CTA_TUPLE_ORIG = 1;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_TUPLE_REPLY. */
    public static final int CTA_TUPLE_REPLY = 2;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_STATUS (be32). */
    public static final int CTA_STATUS = 3;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_PROTOINFO (nested). */
    public static final int CTA_PROTOINFO = 4;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_PROTOINFO_TCP (nested, in CTA_PROTOINFO). */
    public static final int CTA_PROTOINFO_TCP = 1;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_PROTOINFO_TCP_STATE (u8, in CTA_PROTOINFO_TCP). */
    public static final int CTA_PROTOINFO_TCP_STATE = 1;
    /** {@code <linux/netfilter/nf_conntrack_tcp.h>} TCP_CONNTRACK_TIME_WAIT. */
    public static final int TCP_CONNTRACK_TIME_WAIT = 7;
    /** {@code <linux/netfilter/nf_conntrack_tcp.h>} TCP_CONNTRACK_CLOSE. */
    public static final int TCP_CONNTRACK_CLOSE = 8;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_ID (be32). */
    public static final int CTA_ID = 12;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_TUPLE_IP. */
    public static final int CTA_TUPLE_IP = 1;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_TUPLE_PROTO. */
    public static final int CTA_TUPLE_PROTO = 2;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_IP_V4_SRC. */
    public static final int CTA_IP_V4_SRC = 1;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_IP_V4_DST. */
    public static final int CTA_IP_V4_DST = 2;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_IP_V6_SRC. */
    public static final int CTA_IP_V6_SRC = 3;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_IP_V6_DST. */
    public static final int CTA_IP_V6_DST = 4;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_PROTO_NUM (u8). */
    public static final int CTA_PROTO_NUM = 1;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_PROTO_SRC_PORT (be16). */
    public static final int CTA_PROTO_SRC_PORT = 2;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_PROTO_DST_PORT (be16). */
    public static final int CTA_PROTO_DST_PORT = 3;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_PROTO_ICMP_ID (be16). */
    public static final int CTA_PROTO_ICMP_ID = 4;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_PROTO_ICMP_TYPE (u8). */
    public static final int CTA_PROTO_ICMP_TYPE = 5;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_PROTO_ICMP_CODE (u8). */
    public static final int CTA_PROTO_ICMP_CODE = 6;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_PROTO_ICMPV6_ID (be16). */
    public static final int CTA_PROTO_ICMPV6_ID = 7;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_PROTO_ICMPV6_TYPE (u8). */
    public static final int CTA_PROTO_ICMPV6_TYPE = 8;
    /** {@code <linux/netfilter/nfnetlink_conntrack.h>} CTA_PROTO_ICMPV6_CODE (u8). */
    public static final int CTA_PROTO_ICMPV6_CODE = 9;

    // ---- <linux/netfilter/nf_conntrack_common.h> ----------------------------------------------

    /** {@code <linux/netfilter/nf_conntrack_common.h>} IPS_CONFIRMED. */
    public static final int IPS_CONFIRMED = 1 << 3;
    /** {@code <linux/netfilter/nf_conntrack_common.h>} IPS_SRC_NAT. */
    public static final int IPS_SRC_NAT = 1 << 4;
    /** {@code <linux/netfilter/nf_conntrack_common.h>} IPS_SRC_NAT_DONE. */
    public static final int IPS_SRC_NAT_DONE = 1 << 7;

    /**
     * The nlmsg_type of a netfilter message: subsystem in the high byte, message in the low byte
     * ({@code <linux/netfilter/nfnetlink.h>} NFNL_SUBSYS_ID / NFNL_MSG_TYPE).
     *
     * @param subsys the subsystem, e.g. {@link #NFNL_SUBSYS_CTNETLINK}.
     * @param msg    the message, e.g. {@link #IPCTNL_MSG_CT_GET}.
     * @return the nlmsg_type.
     */
    public static int nfnlType(final int subsys, final int msg)
    {
        return (subsys << 8) | msg;
    }

    /**
     * NLMSG_ALIGN / NLA_ALIGN: rounds up to 4 bytes.
     *
     * @param length a length in bytes.
     * @return the aligned length.
     */
    public static int align(final int length)
    {
        return (length + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1);
    }
}
