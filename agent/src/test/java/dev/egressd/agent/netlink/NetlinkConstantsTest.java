package dev.egressd.agent.netlink;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

public class NetlinkConstantsTest
{
    /** Values typed in from the headers by hand; a change here must be a deliberate one. */
    @Test
    void valuesArePinned()
    {
        final Map<String, Integer> expected = new LinkedHashMap<>();
        expected.put("NLMSG_HDRLEN", 16);
        expected.put("NLA_HDRLEN", 4);
        expected.put("NLMSG_ALIGNTO", 4);
        expected.put("SOCKADDR_NL_SIZE", 12);
        expected.put("NLM_F_REQUEST", 0x1);
        expected.put("NLM_F_MULTI", 0x2);
        expected.put("NLM_F_ACK", 0x4);
        expected.put("NLM_F_ECHO", 0x8);
        expected.put("NLM_F_DUMP_INTR", 0x10);
        expected.put("NLM_F_ROOT", 0x100);
        expected.put("NLM_F_MATCH", 0x200);
        expected.put("NLM_F_DUMP", 0x300);
        expected.put("NLM_F_REPLACE", 0x100);
        expected.put("NLM_F_EXCL", 0x200);
        expected.put("NLM_F_CREATE", 0x400);
        expected.put("NLM_F_CAPPED", 0x100);
        expected.put("NLM_F_ACK_TLVS", 0x200);
        expected.put("NLMSG_NOOP", 1);
        expected.put("NLMSG_ERROR", 2);
        expected.put("NLMSG_DONE", 3);
        expected.put("NLMSG_OVERRUN", 4);
        expected.put("NLMSGERR_ATTR_MSG", 1);
        expected.put("NETLINK_ADD_MEMBERSHIP", 1);
        expected.put("NETLINK_DROP_MEMBERSHIP", 2);
        expected.put("NETLINK_NO_ENOBUFS", 5);
        expected.put("NETLINK_CAP_ACK", 10);
        expected.put("NETLINK_EXT_ACK", 11);
        expected.put("NLA_F_NESTED", 0x8000);
        expected.put("NLA_F_NET_BYTEORDER", 0x4000);
        expected.put("NLA_TYPE_MASK", 0x3FFF);
        expected.put("RTM_NEWLINK", 16);
        expected.put("RTM_GETLINK", 18);
        expected.put("RTM_NEWADDR", 20);
        expected.put("RTM_DELADDR", 21);
        expected.put("RTM_GETADDR", 22);
        expected.put("RT_SCOPE_UNIVERSE", 0);
        expected.put("RTM_NEWROUTE", 24);
        expected.put("RTM_DELROUTE", 25);
        expected.put("RTM_GETROUTE", 26);
        expected.put("RTM_NEWRULE", 32);
        expected.put("RTM_DELRULE", 33);
        expected.put("RTM_GETRULE", 34);
        expected.put("RT_SCOPE_NOWHERE", 255);
        expected.put("RTMSG_SIZE", 12);
        expected.put("RTN_UNSPEC", 0);
        expected.put("RTN_UNICAST", 1);
        expected.put("RTPROT_UNSPEC", 0);
        expected.put("RTPROT_KERNEL", 2);
        expected.put("RTPROT_BOOT", 3);
        expected.put("RTPROT_STATIC", 4);
        expected.put("RTPROT_EGRESSD", 0xE5);
        expected.put("RT_TABLE_UNSPEC", 0);
        expected.put("RT_TABLE_DEFAULT", 253);
        expected.put("RT_TABLE_MAIN", 254);
        expected.put("RT_TABLE_LOCAL", 255);
        expected.put("RTA_DST", 1);
        expected.put("RTA_OIF", 4);
        expected.put("RTA_GATEWAY", 5);
        expected.put("RTA_PRIORITY", 6);
        expected.put("RTA_MULTIPATH", 9);
        expected.put("RTA_TABLE", 15);
        expected.put("FIB_RULE_HDR_SIZE", 12);
        expected.put("FIB_RULE_INVERT", 2);
        expected.put("FRA_IIFNAME", 3);
        expected.put("FRA_OIFNAME", 17);
        expected.put("FRA_PRIORITY", 6);
        expected.put("FRA_FWMARK", 10);
        expected.put("FRA_TABLE", 15);
        expected.put("FRA_FWMASK", 16);
        expected.put("FRA_PROTOCOL", 21);
        expected.put("FR_ACT_TO_TBL", 1);
        expected.put("IFINFOMSG_SIZE", 16);
        expected.put("IFLA_IFNAME", 3);
        expected.put("IFNAMSIZ", 16);
        expected.put("IFADDRMSG_SIZE", 8);
        expected.put("IFA_ADDRESS", 1);
        expected.put("IFA_LOCAL", 2);
        expected.put("IFA_LABEL", 3);
        expected.put("IFA_CACHEINFO", 6);
        expected.put("IFA_FLAGS", 8);
        expected.put("IFA_PROTO", 11);
        expected.put("IFAPROT_UNSPEC", 0);
        expected.put("IFAPROT_KERNEL_LO", 1);
        expected.put("IFAPROT_KERNEL_RA", 2);
        expected.put("IFAPROT_KERNEL_LL", 3);
        expected.put("IFAPROT_EGRESSD", 0xE5);
        expected.put("IFA_F_NODAD", 0x2);
        expected.put("IFA_F_DADFAILED", 0x8);
        expected.put("IFA_F_DEPRECATED", 0x20);
        expected.put("IFA_F_TENTATIVE", 0x40);
        expected.put("IFA_F_PERMANENT", 0x80);
        expected.put("IFA_F_NOPREFIXROUTE", 0x200);
        expected.put("IFA_CACHEINFO_SIZE", 16);
        expected.put("INFINITY_LIFE_TIME", 0xFFFFFFFF);
        expected.put("NFGENMSG_SIZE", 4);
        expected.put("NFNETLINK_V0", 0);
        expected.put("NFNL_SUBSYS_CTNETLINK", 1);
        expected.put("NFNLGRP_CONNTRACK_NEW", 1);
        expected.put("NFNLGRP_CONNTRACK_UPDATE", 2);
        expected.put("NFNLGRP_CONNTRACK_DESTROY", 3);
        expected.put("IPCTNL_MSG_CT_NEW", 0);
        expected.put("IPCTNL_MSG_CT_GET", 1);
        expected.put("IPCTNL_MSG_CT_DELETE", 2);
        expected.put("CTA_TUPLE_ORIG", 1);
        expected.put("CTA_TUPLE_REPLY", 2);
        expected.put("CTA_STATUS", 3);
        expected.put("CTA_ID", 12);
        expected.put("CTA_PROTOINFO", 4);
        expected.put("CTA_PROTOINFO_TCP", 1);
        expected.put("CTA_PROTOINFO_TCP_STATE", 1);
        expected.put("TCP_CONNTRACK_TIME_WAIT", 7);
        expected.put("TCP_CONNTRACK_CLOSE", 8);
        expected.put("CTA_TUPLE_IP", 1);
        expected.put("CTA_TUPLE_PROTO", 2);
        expected.put("CTA_IP_V4_SRC", 1);
        expected.put("CTA_IP_V4_DST", 2);
        expected.put("CTA_IP_V6_SRC", 3);
        expected.put("CTA_IP_V6_DST", 4);
        expected.put("CTA_PROTO_NUM", 1);
        expected.put("CTA_PROTO_SRC_PORT", 2);
        expected.put("CTA_PROTO_DST_PORT", 3);
        expected.put("CTA_PROTO_ICMP_ID", 4);
        expected.put("CTA_PROTO_ICMP_TYPE", 5);
        expected.put("CTA_PROTO_ICMP_CODE", 6);
        expected.put("CTA_PROTO_ICMPV6_ID", 7);
        expected.put("CTA_PROTO_ICMPV6_TYPE", 8);
        expected.put("CTA_PROTO_ICMPV6_CODE", 9);
        expected.put("IPS_CONFIRMED", 0x8);
        expected.put("IPS_SRC_NAT", 0x10);
        expected.put("IPS_SRC_NAT_DONE", 0x80);

        final Map<String, Integer> actual = constants();
        assertThat(actual).containsExactlyInAnyOrderEntriesOf(expected);
    }

    /**
     * Re-reads each constant from the UAPI header on this machine (where installed), so the hand-typed
     * table above cannot agree with a typo in the class.
     */
    @Test
    void valuesMatchTheInstalledHeaders() throws IOException
    {
        final Path include = Path.of("/usr/include/linux");
        assumeTrue(Files.isDirectory(include), "no kernel UAPI headers in /usr/include/linux");
        final Map<String, List<String>> byHeader = new LinkedHashMap<>();
        byHeader.put("netlink.h", List.of("NLM_F_REQUEST", "NLM_F_MULTI", "NLM_F_ACK", "NLM_F_ECHO",
            "NLM_F_DUMP_INTR", "NLM_F_ROOT", "NLM_F_MATCH", "NLM_F_REPLACE", "NLM_F_EXCL", "NLM_F_CREATE",
            "NLM_F_CAPPED", "NLM_F_ACK_TLVS", "NLMSG_NOOP", "NLMSG_ERROR", "NLMSG_DONE", "NLMSG_OVERRUN",
            "NLMSGERR_ATTR_MSG", "NETLINK_ADD_MEMBERSHIP", "NETLINK_DROP_MEMBERSHIP", "NETLINK_NO_ENOBUFS",
            "NETLINK_CAP_ACK", "NETLINK_EXT_ACK", "NLA_F_NESTED", "NLA_F_NET_BYTEORDER", "NLMSG_ALIGNTO"));
        byHeader.put("rtnetlink.h", List.of("RTM_NEWLINK", "RTM_GETLINK", "RTM_NEWADDR", "RTM_DELADDR",
            "RTM_GETADDR", "RT_SCOPE_UNIVERSE", "RTM_NEWROUTE", "RTM_DELROUTE", "RTM_GETROUTE", "RTM_NEWRULE",
            "RTM_DELRULE", "RTM_GETRULE", "RT_SCOPE_NOWHERE", "RTN_UNSPEC", "RTN_UNICAST", "RTPROT_UNSPEC",
            "RTPROT_KERNEL", "RTPROT_BOOT", "RTPROT_STATIC", "RT_TABLE_UNSPEC", "RT_TABLE_DEFAULT", "RT_TABLE_MAIN",
            "RT_TABLE_LOCAL", "RTA_DST", "RTA_OIF", "RTA_GATEWAY", "RTA_PRIORITY", "RTA_MULTIPATH", "RTA_TABLE"));
        byHeader.put("fib_rules.h", List.of("FIB_RULE_INVERT", "FRA_IIFNAME", "FRA_OIFNAME", "FRA_PRIORITY", "FRA_FWMARK", "FRA_TABLE", "FRA_FWMASK", "FRA_PROTOCOL",
            "FR_ACT_TO_TBL"));
        byHeader.put("if_link.h", List.of("IFLA_IFNAME"));
        byHeader.put("if.h", List.of("IFNAMSIZ"));
        byHeader.put("if_addr.h", List.of("IFA_ADDRESS", "IFA_LOCAL", "IFA_LABEL", "IFA_CACHEINFO", "IFA_FLAGS",
            "IFA_PROTO", "IFAPROT_UNSPEC", "IFAPROT_KERNEL_LO", "IFAPROT_KERNEL_RA", "IFAPROT_KERNEL_LL",
            "IFA_F_NODAD", "IFA_F_DADFAILED", "IFA_F_DEPRECATED", "IFA_F_TENTATIVE", "IFA_F_PERMANENT",
            "IFA_F_NOPREFIXROUTE"));
        byHeader.put("netfilter/nfnetlink.h", List.of("NFNETLINK_V0", "NFNL_SUBSYS_CTNETLINK",
            "NFNLGRP_CONNTRACK_NEW", "NFNLGRP_CONNTRACK_UPDATE", "NFNLGRP_CONNTRACK_DESTROY"));
        byHeader.put("netfilter/nfnetlink_conntrack.h", List.of("IPCTNL_MSG_CT_NEW", "IPCTNL_MSG_CT_GET",
            "IPCTNL_MSG_CT_DELETE", "CTA_TUPLE_ORIG", "CTA_TUPLE_REPLY", "CTA_STATUS", "CTA_ID", "CTA_TUPLE_IP",
            "CTA_TUPLE_PROTO", "CTA_IP_V4_SRC", "CTA_IP_V4_DST", "CTA_IP_V6_SRC", "CTA_IP_V6_DST", "CTA_PROTO_NUM",
            "CTA_PROTO_SRC_PORT", "CTA_PROTO_DST_PORT", "CTA_PROTO_ICMP_ID", "CTA_PROTO_ICMP_TYPE",
            "CTA_PROTO_ICMP_CODE", "CTA_PROTO_ICMPV6_ID", "CTA_PROTO_ICMPV6_TYPE", "CTA_PROTO_ICMPV6_CODE",
            "CTA_PROTOINFO", "CTA_PROTOINFO_TCP", "CTA_PROTOINFO_TCP_STATE"));
        byHeader.put("netfilter/nf_conntrack_tcp.h", List.of("TCP_CONNTRACK_TIME_WAIT", "TCP_CONNTRACK_CLOSE"));
        byHeader.put("netfilter/nf_conntrack_common.h", List.of("IPS_CONFIRMED", "IPS_SRC_NAT", "IPS_SRC_NAT_DONE"));

        final Map<String, Integer> ours = constants();
        for (final Map.Entry<String, List<String>> e : byHeader.entrySet())
        {
            final Map<String, Long> header = HeaderValues.read(include.resolve(e.getKey()));
            for (final String name : e.getValue())
            {
                assertThat(header).as("%s in linux/%s", name, e.getKey()).containsKey(name);
                assertThat(ours.get(name).longValue()).as("%s (linux/%s)", name, e.getKey()).isEqualTo(header.get(name));
            }
        }
    }

    @Test
    void nfnlTypePutsTheSubsystemInTheHighByte()
    {
        assertThat(NetlinkConstants.nfnlType(NetlinkConstants.NFNL_SUBSYS_CTNETLINK, NetlinkConstants.IPCTNL_MSG_CT_DELETE))
            .isEqualTo(0x0102);
    }

    @Test
    void alignRoundsUpToFour()
    {
        assertThat(NetlinkConstants.align(0)).isZero();
        assertThat(NetlinkConstants.align(5)).isEqualTo(8);
        assertThat(NetlinkConstants.align(8)).isEqualTo(8);
    }

    private static Map<String, Integer> constants()
    {
        return intConstants(NetlinkConstants.class);
    }

    /**
     * A constants class's public static int fields by name, for comparing with the C headers.
     *
     * @param constants the class.
     * @return name to value.
     */
    public static Map<String, Integer> intConstants(final Class<?> constants)
    {
        final Map<String, Integer> out = new HashMap<>();
        for (final Field f : constants.getFields())
        {
            if (Modifier.isStatic(f.getModifiers()) && f.getType() == int.class)
            {
                try
                {
                    out.put(f.getName(), f.getInt(null));
                }
                catch (final IllegalAccessException e)
                {
                    throw new AssertionError(e);
                }
            }
        }
        return out;
    }

    /** A deliberately small C header reader: #define NAME value, (1 << n), A|B, and enum counting. */
    public static final class HeaderValues
    {
        private static final Pattern DEFINE = Pattern.compile("^\\s*#\\s*define\\s+(\\w+)\\s+(.+?)\\s*(/\\*.*)?$");
        private static final Pattern ENUM_MEMBER = Pattern.compile("^\\s*(\\w+)\\s*(=\\s*([^,/]+?))?\\s*,?\\s*(/\\*.*)?$");

        public static Map<String, Long> read(final Path header) throws IOException
        {
            final Map<String, Long> values = new HashMap<>();
            boolean inEnum = false;
            long next = 0;
            for (final String raw : Files.readAllLines(header))
            {
                final String line = raw.replaceAll("//.*$", "");
                if (line.matches("^\\s*enum\\b.*"))
                {
                    inEnum = true;
                    next = 0;
                    continue;
                }
                if (inEnum && line.contains("}"))
                {
                    inEnum = false;
                    continue;
                }
                final Matcher d = DEFINE.matcher(line);
                if (d.matches())
                {
                    final Long v = eval(d.group(2), values);
                    if (v != null)
                    {
                        values.putIfAbsent(d.group(1), v);
                    }
                    continue;
                }
                if (inEnum)
                {
                    final Matcher m = ENUM_MEMBER.matcher(line);
                    if (m.matches() && !line.isBlank())
                    {
                        final Long v = m.group(3) == null ? Long.valueOf(next) : eval(m.group(3), values);
                        if (v != null)
                        {
                            values.put(m.group(1), v);
                            next = v + 1;
                        }
                    }
                }
            }
            return values;
        }

        private static Long eval(final String expression, final Map<String, Long> known)
        {
            String e = expression.trim();
            while (e.startsWith("(") && e.endsWith(")"))
            {
                e = e.substring(1, e.length() - 1).trim();
            }
            if (e.contains("|"))
            {
                long v = 0;
                for (final String part : e.split("\\|"))
                {
                    final Long p = eval(part, known);
                    if (p == null)
                    {
                        return null;
                    }
                    v |= p;
                }
                return v;
            }
            if (e.contains("<<"))
            {
                final String[] parts = e.split("<<");
                final Long a = eval(parts[0], known);
                final Long b = eval(parts[1], known);
                return a == null || b == null ? null : a << b;
            }
            if (e.matches("0[xX][0-9a-fA-F]+[uUlL]*"))
            {
                return Long.parseLong(e.replaceAll("[uUlL]+$", "").substring(2), 16);
            }
            if (e.matches("0[0-7]+"))
            {
                return Long.parseLong(e, 8);
            }
            if (e.matches("\\d+[uUlL]*"))
            {
                return Long.parseLong(e.replaceAll("[uUlL]+$", ""));
            }
            if (e.matches("\\w+"))
            {
                return known.get(e);
            }
            return null;
        }
    }
}
