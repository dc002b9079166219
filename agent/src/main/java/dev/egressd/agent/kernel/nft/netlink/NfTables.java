package dev.egressd.agent.kernel.nft.netlink;

/**
 * Constants of the nf_tables netlink protocol, from {@code <linux/netfilter/nf_tables.h>},
 * {@code <linux/netfilter/nfnetlink.h>}, {@code <linux/netfilter.h>} and
 * {@code <linux/netfilter/nf_nat.h>}; pinned and checked against the installed headers by the tests.
 * Attribute payloads of nf_tables are network order (u32 registers, keys, flags and lengths alike).
 */
public final class NfTables
{
    /** {@code <linux/netfilter/nfnetlink.h>} NFNL_SUBSYS_NFTABLES. */
    public static final int NFNL_SUBSYS_NFTABLES = 10;
    /** {@code <linux/netfilter/nfnetlink.h>} NFNL_MSG_BATCH_BEGIN (NLMSG_MIN_TYPE). */
    public static final int NFNL_MSG_BATCH_BEGIN = 0x10;
    /** {@code <linux/netfilter/nfnetlink.h>} NFNL_MSG_BATCH_END. */
    public static final int NFNL_MSG_BATCH_END = 0x11;

    /** {@code <linux/netfilter.h>} NFPROTO_UNSPEC. */
    public static final int NFPROTO_UNSPEC = 0;
    /** {@code <linux/netfilter.h>} NFPROTO_INET: the family of an {@code inet} table. */
    public static final int NFPROTO_INET = 1;
    /** {@code <linux/netfilter.h>} NFPROTO_IPV4. */
    public static final int NFPROTO_IPV4 = 2;
    /** {@code <linux/netfilter.h>} NFPROTO_IPV6. */
    public static final int NFPROTO_IPV6 = 10;

    /** nf_tables_msg_types NFT_MSG_NEWCHAIN (also the type of a chain in a GETCHAIN reply). */
    public static final int NFT_MSG_NEWCHAIN = 3;
    /** nf_tables_msg_types NFT_MSG_GETCHAIN. */
    public static final int NFT_MSG_GETCHAIN = 4;
    /** nf_tables_msg_types NFT_MSG_NEWRULE. */
    public static final int NFT_MSG_NEWRULE = 6;
    /** nf_tables_msg_types NFT_MSG_GETRULE. */
    public static final int NFT_MSG_GETRULE = 7;
    /** nf_tables_msg_types NFT_MSG_DELRULE. */
    public static final int NFT_MSG_DELRULE = 8;
    /** nf_tables_msg_types NFT_MSG_NEWSET (also the type of a set in a GETSET reply). */
    public static final int NFT_MSG_NEWSET = 9;
    /** nf_tables_msg_types NFT_MSG_GETSET. */
    public static final int NFT_MSG_GETSET = 10;
    /** nf_tables_msg_types NFT_MSG_NEWSETELEM. */
    public static final int NFT_MSG_NEWSETELEM = 12;
    /** nf_tables_msg_types NFT_MSG_GETSETELEM. */
    public static final int NFT_MSG_GETSETELEM = 13;
    /** nf_tables_msg_types NFT_MSG_DELSETELEM. */
    public static final int NFT_MSG_DELSETELEM = 14;
    /** nf_tables_msg_types NFT_MSG_NEWGEN. */
    public static final int NFT_MSG_NEWGEN = 15;
    /** nf_tables_msg_types NFT_MSG_GETGEN. */
    public static final int NFT_MSG_GETGEN = 16;
    /** nf_tables_msg_types NFT_MSG_NEWOBJ. */
    public static final int NFT_MSG_NEWOBJ = 18;
    /** nf_tables_msg_types NFT_MSG_GETOBJ. */
    public static final int NFT_MSG_GETOBJ = 19;

    /** {@code <linux/netlink.h>} NLM_F_APPEND: a new rule goes at the chain's end. */
    public static final int NLM_F_APPEND = 0x800;

    /** nft_set_attributes NFTA_SET_TABLE. */
    public static final int NFTA_SET_TABLE = 1;
    /** nft_set_attributes NFTA_SET_NAME. */
    public static final int NFTA_SET_NAME = 2;
    /** nft_set_attributes NFTA_SET_FLAGS. */
    public static final int NFTA_SET_FLAGS = 3;
    /** nft_set_flags NFT_SET_ANONYMOUS: a rule's own set, not one of the table's named ones. */
    public static final int NFT_SET_ANONYMOUS = 0x1;

    /** nft_list_attributes NFTA_LIST_ELEM. */
    public static final int NFTA_LIST_ELEM = 1;

    /** nft_data_attributes NFTA_DATA_VALUE. */
    public static final int NFTA_DATA_VALUE = 1;

    /** nft_set_elem_list_attributes NFTA_SET_ELEM_LIST_TABLE. */
    public static final int NFTA_SET_ELEM_LIST_TABLE = 1;
    /** nft_set_elem_list_attributes NFTA_SET_ELEM_LIST_SET. */
    public static final int NFTA_SET_ELEM_LIST_SET = 2;
    /** nft_set_elem_list_attributes NFTA_SET_ELEM_LIST_ELEMENTS. */
    public static final int NFTA_SET_ELEM_LIST_ELEMENTS = 3;

    /** nft_set_elem_attributes NFTA_SET_ELEM_KEY. */
    public static final int NFTA_SET_ELEM_KEY = 1;
    /** nft_set_elem_attributes NFTA_SET_ELEM_DATA. */
    public static final int NFTA_SET_ELEM_DATA = 2;
    /** nft_set_elem_attributes NFTA_SET_ELEM_FLAGS. */
    public static final int NFTA_SET_ELEM_FLAGS = 3;
    /** nft_set_elem_attributes NFTA_SET_ELEM_KEY_END: the last key of an interval of a concatenated set. */
    public static final int NFTA_SET_ELEM_KEY_END = 10;

    /** nft_chain_attributes NFTA_CHAIN_TABLE. */
    public static final int NFTA_CHAIN_TABLE = 1;
    /** nft_chain_attributes NFTA_CHAIN_NAME. */
    public static final int NFTA_CHAIN_NAME = 3;
    /** nft_chain_attributes NFTA_CHAIN_HOOK (nested: hook number and priority). */
    public static final int NFTA_CHAIN_HOOK = 4;
    /** nft_chain_attributes NFTA_CHAIN_POLICY. */
    public static final int NFTA_CHAIN_POLICY = 5;
    /** nft_chain_attributes NFTA_CHAIN_TYPE. */
    public static final int NFTA_CHAIN_TYPE = 7;

    /** nft_gen_attributes NFTA_GEN_ID. */
    public static final int NFTA_GEN_ID = 1;

    /** nft_object_attributes NFTA_OBJ_TABLE. */
    public static final int NFTA_OBJ_TABLE = 1;
    /** nft_object_attributes NFTA_OBJ_NAME. */
    public static final int NFTA_OBJ_NAME = 2;
    /** nft_object_attributes NFTA_OBJ_TYPE. */
    public static final int NFTA_OBJ_TYPE = 3;
    /** nft_object_attributes NFTA_OBJ_DATA. */
    public static final int NFTA_OBJ_DATA = 4;
    /** NFT_OBJECT_COUNTER. */
    public static final int NFT_OBJECT_COUNTER = 1;
    /** nft_counter_attributes NFTA_COUNTER_BYTES. */
    public static final int NFTA_COUNTER_BYTES = 1;
    /** nft_counter_attributes NFTA_COUNTER_PACKETS. */
    public static final int NFTA_COUNTER_PACKETS = 2;

    /** nft_rule_attributes NFTA_RULE_TABLE. */
    public static final int NFTA_RULE_TABLE = 1;
    /** nft_rule_attributes NFTA_RULE_CHAIN. */
    public static final int NFTA_RULE_CHAIN = 2;
    /** nft_rule_attributes NFTA_RULE_HANDLE. */
    public static final int NFTA_RULE_HANDLE = 3;
    /** nft_rule_attributes NFTA_RULE_EXPRESSIONS. */
    public static final int NFTA_RULE_EXPRESSIONS = 4;
    /** nft_rule_attributes NFTA_RULE_USERDATA. */
    public static final int NFTA_RULE_USERDATA = 7;

    /** nft_expr_attributes NFTA_EXPR_NAME. */
    public static final int NFTA_EXPR_NAME = 1;
    /** nft_expr_attributes NFTA_EXPR_DATA. */
    public static final int NFTA_EXPR_DATA = 2;

    /** nft_registers NFT_REG_1: 16 bytes, the first four 32-bit registers. */
    public static final int NFT_REG_1 = 1;
    /** nft_registers NFT_REG_2. */
    public static final int NFT_REG_2 = 2;
    /** nft_registers NFT_REG32_00. */
    public static final int NFT_REG32_00 = 8;
    /** nft_registers NFT_REG32_05: byte 20 after NFT_REG_1. */
    public static final int NFT_REG32_05 = 13;
    /** nft_registers NFT_REG32_09: byte 36 after NFT_REG_1. */
    public static final int NFT_REG32_09 = 17;

    /** nft_meta_attributes NFTA_META_DREG. */
    public static final int NFTA_META_DREG = 1;
    /** nft_meta_attributes NFTA_META_KEY. */
    public static final int NFTA_META_KEY = 2;
    /** nft_meta_keys NFT_META_NFPROTO. */
    public static final int NFT_META_NFPROTO = 15;
    /** nft_meta_keys NFT_META_L4PROTO. */
    public static final int NFT_META_L4PROTO = 16;

    /** nft_cmp_attributes NFTA_CMP_SREG. */
    public static final int NFTA_CMP_SREG = 1;
    /** nft_cmp_attributes NFTA_CMP_OP. */
    public static final int NFTA_CMP_OP = 2;
    /** nft_cmp_attributes NFTA_CMP_DATA. */
    public static final int NFTA_CMP_DATA = 3;
    /** nft_cmp_ops NFT_CMP_EQ. */
    public static final int NFT_CMP_EQ = 0;

    /** nft_payload_attributes NFTA_PAYLOAD_DREG. */
    public static final int NFTA_PAYLOAD_DREG = 1;
    /** nft_payload_attributes NFTA_PAYLOAD_BASE. */
    public static final int NFTA_PAYLOAD_BASE = 2;
    /** nft_payload_attributes NFTA_PAYLOAD_OFFSET. */
    public static final int NFTA_PAYLOAD_OFFSET = 3;
    /** nft_payload_attributes NFTA_PAYLOAD_LEN. */
    public static final int NFTA_PAYLOAD_LEN = 4;
    /** nft_payload_bases NFT_PAYLOAD_NETWORK_HEADER. */
    public static final int NFT_PAYLOAD_NETWORK_HEADER = 1;

    /** nft_lookup_attributes NFTA_LOOKUP_SET. */
    public static final int NFTA_LOOKUP_SET = 1;
    /** nft_lookup_attributes NFTA_LOOKUP_SREG. */
    public static final int NFTA_LOOKUP_SREG = 2;
    /** nft_lookup_attributes NFTA_LOOKUP_DREG. */
    public static final int NFTA_LOOKUP_DREG = 3;

    /** nft_nat_attributes NFTA_NAT_TYPE. */
    public static final int NFTA_NAT_TYPE = 1;
    /** nft_nat_attributes NFTA_NAT_FAMILY. */
    public static final int NFTA_NAT_FAMILY = 2;
    /** nft_nat_attributes NFTA_NAT_REG_ADDR_MIN. */
    public static final int NFTA_NAT_REG_ADDR_MIN = 3;
    /** nft_nat_attributes NFTA_NAT_REG_ADDR_MAX. */
    public static final int NFTA_NAT_REG_ADDR_MAX = 4;
    /** nft_nat_attributes NFTA_NAT_REG_PROTO_MIN. */
    public static final int NFTA_NAT_REG_PROTO_MIN = 5;
    /** nft_nat_attributes NFTA_NAT_REG_PROTO_MAX. */
    public static final int NFTA_NAT_REG_PROTO_MAX = 6;
    /** nft_nat_attributes NFTA_NAT_FLAGS. */
    public static final int NFTA_NAT_FLAGS = 7;
    /** nft_nat_types NFT_NAT_SNAT. */
    public static final int NFT_NAT_SNAT = 0;
    /** {@code <linux/netfilter/nf_nat.h>} NF_NAT_RANGE_MAP_IPS. */
    public static final int NF_NAT_RANGE_MAP_IPS = 1;
    /** {@code <linux/netfilter/nf_nat.h>} NF_NAT_RANGE_PROTO_SPECIFIED. */
    public static final int NF_NAT_RANGE_PROTO_SPECIFIED = 2;

    /** nf_tables_msg_types NFT_MSG_NEWFLOWTABLE (also the type of a flowtable in a GETFLOWTABLE reply). */
    public static final int NFT_MSG_NEWFLOWTABLE = 22;
    /** nf_tables_msg_types NFT_MSG_GETFLOWTABLE. */
    public static final int NFT_MSG_GETFLOWTABLE = 23;
    /** nft_chain_attributes NFTA_CHAIN_HANDLE (u64). */
    public static final int NFTA_CHAIN_HANDLE = 2;
    /** nft_chain_attributes NFTA_CHAIN_FLAGS. */
    public static final int NFTA_CHAIN_FLAGS = 10;
    /** nft_chain_flags NFT_CHAIN_BINDING: a rule's own anonymous chain ({@code jump { ... }}), gone with its rule. */
    public static final int NFT_CHAIN_BINDING = 0x4;
    /** nft_hook_attributes NFTA_HOOK_HOOKNUM. */
    public static final int NFTA_HOOK_HOOKNUM = 1;
    /** nft_hook_attributes NFTA_HOOK_PRIORITY (a signed 32-bit priority). */
    public static final int NFTA_HOOK_PRIORITY = 2;
    /** nft_set_attributes NFTA_SET_KEY_LEN. */
    public static final int NFTA_SET_KEY_LEN = 5;
    /** nft_set_attributes NFTA_SET_DATA_TYPE: nft's own type id of a map's data, stored for it by the kernel. */
    public static final int NFTA_SET_DATA_TYPE = 6;
    /** nft_set_attributes NFTA_SET_DATA_LEN. */
    public static final int NFTA_SET_DATA_LEN = 7;
    /** nft_set_attributes NFTA_SET_HANDLE (u64). */
    public static final int NFTA_SET_HANDLE = 16;
    /** nft_set_flags NFT_SET_MAP: a map, not a set. */
    public static final int NFT_SET_MAP = 0x8;
    /** nft_set_flags NFT_SET_OBJECT: a map to stateful objects. */
    public static final int NFT_SET_OBJECT = 0x40;
    /** nft_object_attributes NFTA_OBJ_HANDLE (u64). */
    public static final int NFTA_OBJ_HANDLE = 6;
    /** NFT_OBJECT_UNSPEC: every object type, in a GETOBJ dump. */
    public static final int NFT_OBJECT_UNSPEC = 0;
    /** NFT_OBJECT_QUOTA. */
    public static final int NFT_OBJECT_QUOTA = 2;
    /** NFT_OBJECT_CT_HELPER. */
    public static final int NFT_OBJECT_CT_HELPER = 3;
    /** NFT_OBJECT_LIMIT. */
    public static final int NFT_OBJECT_LIMIT = 4;
    /** NFT_OBJECT_CONNLIMIT. */
    public static final int NFT_OBJECT_CONNLIMIT = 5;
    /** NFT_OBJECT_TUNNEL. */
    public static final int NFT_OBJECT_TUNNEL = 6;
    /** NFT_OBJECT_CT_TIMEOUT. */
    public static final int NFT_OBJECT_CT_TIMEOUT = 7;
    /** NFT_OBJECT_SECMARK. */
    public static final int NFT_OBJECT_SECMARK = 8;
    /** NFT_OBJECT_CT_EXPECT. */
    public static final int NFT_OBJECT_CT_EXPECT = 9;
    /** NFT_OBJECT_SYNPROXY. */
    public static final int NFT_OBJECT_SYNPROXY = 10;
    /** nft_flowtable_attributes NFTA_FLOWTABLE_TABLE. */
    public static final int NFTA_FLOWTABLE_TABLE = 1;
    /** nft_flowtable_attributes NFTA_FLOWTABLE_NAME. */
    public static final int NFTA_FLOWTABLE_NAME = 2;
    /** nft_flowtable_attributes NFTA_FLOWTABLE_HANDLE (u64). */
    public static final int NFTA_FLOWTABLE_HANDLE = 5;
    /** {@code <linux/netfilter.h>} NF_DROP: a base chain's policy. */
    public static final int NF_DROP = 0;
    /** {@code <linux/netfilter.h>} NF_ACCEPT: a base chain's policy. */
    public static final int NF_ACCEPT = 1;
    /** {@code <linux/netfilter.h>} nf_inet_hooks NF_INET_PRE_ROUTING. */
    public static final int NF_INET_PRE_ROUTING = 0;
    /** {@code <linux/netfilter.h>} NF_INET_LOCAL_IN. */
    public static final int NF_INET_LOCAL_IN = 1;
    /** {@code <linux/netfilter.h>} NF_INET_FORWARD. */
    public static final int NF_INET_FORWARD = 2;
    /** {@code <linux/netfilter.h>} NF_INET_LOCAL_OUT. */
    public static final int NF_INET_LOCAL_OUT = 3;
    /** {@code <linux/netfilter.h>} NF_INET_POST_ROUTING. */
    public static final int NF_INET_POST_ROUTING = 4;

    /** libnftnl's udata TLV type of a rule comment (NFTNL_UDATA_RULE_COMMENT), what nft lists as {@code comment}. */
    public static final int NFTNL_UDATA_RULE_COMMENT = 0;

    private NfTables()
    {
    }

    /**
     * The nlmsg_type of an nf_tables message.
     *
     * @param msg e.g. {@link #NFT_MSG_NEWSETELEM}.
     * @return {@code NFNL_SUBSYS_NFTABLES << 8 | msg}.
     */
    public static int type(final int msg)
    {
        return (NFNL_SUBSYS_NFTABLES << 8) | msg;
    }
}
