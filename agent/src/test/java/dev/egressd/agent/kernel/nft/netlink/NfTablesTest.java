package dev.egressd.agent.kernel.nft.netlink;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.egressd.agent.netlink.NetlinkConstantsTest;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class NfTablesTest
{
    /** Values typed in from the headers by hand; a change here must be a deliberate one. */
    @Test
    void valuesArePinned()
    {
        final Map<String, Integer> expected = new LinkedHashMap<>();
        expected.put("NFNL_SUBSYS_NFTABLES", 10);
        expected.put("NFNL_MSG_BATCH_BEGIN", 0x10);
        expected.put("NFNL_MSG_BATCH_END", 0x11);
        expected.put("NFPROTO_UNSPEC", 0);
        expected.put("NFPROTO_INET", 1);
        expected.put("NFPROTO_IPV4", 2);
        expected.put("NFPROTO_IPV6", 10);
        expected.put("NFT_MSG_NEWCHAIN", 3);
        expected.put("NFT_MSG_GETCHAIN", 4);
        expected.put("NFT_MSG_NEWRULE", 6);
        expected.put("NFT_MSG_GETRULE", 7);
        expected.put("NFT_MSG_DELRULE", 8);
        expected.put("NFT_MSG_NEWSET", 9);
        expected.put("NFT_MSG_GETSET", 10);
        expected.put("NFTA_SET_TABLE", 1);
        expected.put("NFTA_SET_NAME", 2);
        expected.put("NFTA_SET_FLAGS", 3);
        expected.put("NFT_SET_ANONYMOUS", 1);
        expected.put("NFT_MSG_NEWSETELEM", 12);
        expected.put("NFT_MSG_GETSETELEM", 13);
        expected.put("NFT_MSG_DELSETELEM", 14);
        expected.put("NFT_MSG_NEWGEN", 15);
        expected.put("NFT_MSG_GETGEN", 16);
        expected.put("NFT_MSG_NEWOBJ", 18);
        expected.put("NFT_MSG_GETOBJ", 19);
        expected.put("NLM_F_APPEND", 0x800);
        expected.put("NFTA_LIST_ELEM", 1);
        expected.put("NFTA_DATA_VALUE", 1);
        expected.put("NFTA_SET_ELEM_LIST_TABLE", 1);
        expected.put("NFTA_SET_ELEM_LIST_SET", 2);
        expected.put("NFTA_SET_ELEM_LIST_ELEMENTS", 3);
        expected.put("NFTA_SET_ELEM_KEY", 1);
        expected.put("NFTA_SET_ELEM_DATA", 2);
        expected.put("NFTA_SET_ELEM_FLAGS", 3);
        expected.put("NFTA_SET_ELEM_KEY_END", 10);
        expected.put("NFTA_CHAIN_TABLE", 1);
        expected.put("NFTA_CHAIN_NAME", 3);
        expected.put("NFTA_CHAIN_HOOK", 4);
        expected.put("NFTA_CHAIN_POLICY", 5);
        expected.put("NFTA_CHAIN_TYPE", 7);
        expected.put("NFTA_GEN_ID", 1);
        expected.put("NFTA_OBJ_TABLE", 1);
        expected.put("NFTA_OBJ_NAME", 2);
        expected.put("NFTA_OBJ_TYPE", 3);
        expected.put("NFTA_OBJ_DATA", 4);
        expected.put("NFT_OBJECT_COUNTER", 1);
        expected.put("NFTA_COUNTER_BYTES", 1);
        expected.put("NFTA_COUNTER_PACKETS", 2);
        expected.put("NFTA_RULE_TABLE", 1);
        expected.put("NFTA_RULE_CHAIN", 2);
        expected.put("NFTA_RULE_HANDLE", 3);
        expected.put("NFTA_RULE_EXPRESSIONS", 4);
        expected.put("NFTA_RULE_USERDATA", 7);
        expected.put("NFTA_EXPR_NAME", 1);
        expected.put("NFTA_EXPR_DATA", 2);
        expected.put("NFT_REG_1", 1);
        expected.put("NFT_REG_2", 2);
        expected.put("NFT_REG32_00", 8);
        expected.put("NFT_REG32_05", 13);
        expected.put("NFT_REG32_09", 17);
        expected.put("NFTA_META_DREG", 1);
        expected.put("NFTA_META_KEY", 2);
        expected.put("NFT_META_NFPROTO", 15);
        expected.put("NFT_META_L4PROTO", 16);
        expected.put("NFTA_CMP_SREG", 1);
        expected.put("NFTA_CMP_OP", 2);
        expected.put("NFTA_CMP_DATA", 3);
        expected.put("NFT_CMP_EQ", 0);
        expected.put("NFTA_PAYLOAD_DREG", 1);
        expected.put("NFTA_PAYLOAD_BASE", 2);
        expected.put("NFTA_PAYLOAD_OFFSET", 3);
        expected.put("NFTA_PAYLOAD_LEN", 4);
        expected.put("NFT_PAYLOAD_NETWORK_HEADER", 1);
        expected.put("NFTA_LOOKUP_SET", 1);
        expected.put("NFTA_LOOKUP_SREG", 2);
        expected.put("NFTA_LOOKUP_DREG", 3);
        expected.put("NFTA_NAT_TYPE", 1);
        expected.put("NFTA_NAT_FAMILY", 2);
        expected.put("NFTA_NAT_REG_ADDR_MIN", 3);
        expected.put("NFTA_NAT_REG_ADDR_MAX", 4);
        expected.put("NFTA_NAT_REG_PROTO_MIN", 5);
        expected.put("NFTA_NAT_REG_PROTO_MAX", 6);
        expected.put("NFTA_NAT_FLAGS", 7);
        expected.put("NFT_NAT_SNAT", 0);
        expected.put("NF_NAT_RANGE_MAP_IPS", 1);
        expected.put("NF_NAT_RANGE_PROTO_SPECIFIED", 2);
        expected.put("NFTNL_UDATA_RULE_COMMENT", 0);
        expected.put("NFT_MSG_NEWFLOWTABLE", 22);
        expected.put("NFT_MSG_GETFLOWTABLE", 23);
        expected.put("NFTA_CHAIN_HANDLE", 2);
        expected.put("NFTA_CHAIN_FLAGS", 10);
        expected.put("NFT_CHAIN_BINDING", 4);
        expected.put("NFTA_HOOK_HOOKNUM", 1);
        expected.put("NFTA_HOOK_PRIORITY", 2);
        expected.put("NFTA_SET_KEY_LEN", 5);
        expected.put("NFTA_SET_DATA_TYPE", 6);
        expected.put("NFTA_SET_DATA_LEN", 7);
        expected.put("NFTA_SET_HANDLE", 16);
        expected.put("NFT_SET_MAP", 8);
        expected.put("NFT_SET_OBJECT", 64);
        expected.put("NFTA_OBJ_HANDLE", 6);
        expected.put("NFT_OBJECT_UNSPEC", 0);
        expected.put("NFT_OBJECT_QUOTA", 2);
        expected.put("NFT_OBJECT_CT_HELPER", 3);
        expected.put("NFT_OBJECT_LIMIT", 4);
        expected.put("NFT_OBJECT_CONNLIMIT", 5);
        expected.put("NFT_OBJECT_TUNNEL", 6);
        expected.put("NFT_OBJECT_CT_TIMEOUT", 7);
        expected.put("NFT_OBJECT_SECMARK", 8);
        expected.put("NFT_OBJECT_CT_EXPECT", 9);
        expected.put("NFT_OBJECT_SYNPROXY", 10);
        expected.put("NFTA_FLOWTABLE_TABLE", 1);
        expected.put("NFTA_FLOWTABLE_NAME", 2);
        expected.put("NFTA_FLOWTABLE_HANDLE", 5);
        expected.put("NF_DROP", 0);
        expected.put("NF_ACCEPT", 1);
        expected.put("NF_INET_PRE_ROUTING", 0);
        expected.put("NF_INET_LOCAL_IN", 1);
        expected.put("NF_INET_FORWARD", 2);
        expected.put("NF_INET_LOCAL_OUT", 3);
        expected.put("NF_INET_POST_ROUTING", 4);
        assertThat(constants()).containsExactlyInAnyOrderEntriesOf(expected);
    }

    /**
     * Re-reads each constant from the UAPI headers on this machine (where installed). Not checked there:
     * NFNL_MSG_BATCH_BEGIN/END (defined through NLMSG_MIN_TYPE of another header) and libnftnl's
     * NFTNL_UDATA_RULE_COMMENT (libnftnl's own header, not installed).
     */
    @Test
    void valuesMatchTheInstalledHeaders() throws IOException
    {
        final Path include = Path.of("/usr/include/linux");
        assumeTrue(Files.isRegularFile(include.resolve("netfilter/nf_tables.h")), "no nf_tables.h in /usr/include/linux");
        final Map<String, List<String>> byHeader = new LinkedHashMap<>();
        byHeader.put("netfilter/nfnetlink.h", List.of("NFNL_SUBSYS_NFTABLES"));
        byHeader.put("netfilter.h", List.of("NFPROTO_UNSPEC", "NFPROTO_INET", "NFPROTO_IPV4", "NFPROTO_IPV6",
            "NF_DROP", "NF_ACCEPT", "NF_INET_PRE_ROUTING", "NF_INET_LOCAL_IN", "NF_INET_FORWARD", "NF_INET_LOCAL_OUT",
            "NF_INET_POST_ROUTING"));
        byHeader.put("netlink.h", List.of("NLM_F_APPEND"));
        byHeader.put("netfilter/nf_nat.h", List.of("NF_NAT_RANGE_MAP_IPS", "NF_NAT_RANGE_PROTO_SPECIFIED"));
        final List<String> nfTables = constants().keySet().stream()
            .filter(n -> n.startsWith("NFT_") || n.startsWith("NFTA_"))
            .toList();
        byHeader.put("netfilter/nf_tables.h", nfTables);
        final Map<String, Integer> ours = constants();
        for (final Map.Entry<String, List<String>> e : byHeader.entrySet())
        {
            final Map<String, Long> header = NetlinkConstantsTest.HeaderValues.read(include.resolve(e.getKey()));
            for (final String name : e.getValue())
            {
                assertThat(header).as("%s in linux/%s", name, e.getKey()).containsKey(name);
                assertThat(ours.get(name).longValue()).as("%s (linux/%s)", name, e.getKey()).isEqualTo(header.get(name));
            }
        }
    }

    @Test
    void typePutsTheSubsystemInTheHighByte()
    {
        assertThat(NfTables.type(NfTables.NFT_MSG_NEWSETELEM)).isEqualTo(0x0a0c);
    }

    private static Map<String, Integer> constants()
    {
        return NetlinkConstantsTest.intConstants(NfTables.class);
    }
}
