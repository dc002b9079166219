package dev.egressd.agent.kernel.nft.netlink;

import static dev.egressd.agent.kernel.nft.netlink.NfTables.*;

import dev.egressd.agent.netlink.NetlinkWriter;
import java.util.Arrays;

/**
 * One expression of an nf_tables rule, encoded as nf_tables.h lays it out: an NFTA_LIST_ELEM holding the
 * expression's name and its NFTA_EXPR_DATA attributes (u32s in network order). Only the expressions
 * egressd builds over netlink are here.
 */
public sealed interface NftExpr
{
    /**
     * The expression's name as the kernel knows it, e.g. {@code meta}.
     *
     * @return the name.
     */
    String name();

    /**
     * Writes the expression's NFTA_EXPR_DATA attributes.
     *
     * @param w the writer, inside NFTA_EXPR_DATA.
     */
    void encodeData(NetlinkWriter w);

    /**
     * Writes the whole NFTA_LIST_ELEM.
     *
     * @param w the writer, inside NFTA_RULE_EXPRESSIONS.
     */
    default void encode(final NetlinkWriter w)
    {
        final int elem = w.beginNested(NFTA_LIST_ELEM);
        w.attrString(NFTA_EXPR_NAME, name());
        final int data = w.beginNested(NFTA_EXPR_DATA);
        encodeData(w);
        w.endNested(data);
        w.endNested(elem);
    }

    /**
     * {@code meta load <key> => reg <dreg>}.
     *
     * @param key  e.g. {@link NfTables#NFT_META_L4PROTO}.
     * @param dreg the destination register.
     */
    record Meta(int key, int dreg) implements NftExpr
    {
        @Override
        public String name()
        {
            return "meta";
        }

        @Override
        public void encodeData(final NetlinkWriter w)
        {
            w.attrU32BE(NFTA_META_KEY, key);
            w.attrU32BE(NFTA_META_DREG, dreg);
        }
    }

    /**
     * {@code cmp eq reg <sreg> <data>}.
     *
     * @param sreg the register compared.
     * @param data the bytes it must equal.
     */
    record CmpEq(int sreg, byte[] data) implements NftExpr
    {
        /**
         * A comparison with a copy of the bytes.
         *
         * @param sreg the register compared.
         * @param data the bytes it must equal (1..16).
         */
        public CmpEq
        {
            if (data.length == 0 || data.length > 16)
            {
                throw new IllegalArgumentException("data: " + data.length + " bytes, not 1..16");
            }
            data = data.clone();
        }

        @Override
        public byte[] data()
        {
            return data.clone();
        }

        @Override
        public String name()
        {
            return "cmp";
        }

        @Override
        public void encodeData(final NetlinkWriter w)
        {
            w.attrU32BE(NFTA_CMP_SREG, sreg);
            w.attrU32BE(NFTA_CMP_OP, NFT_CMP_EQ);
            final int d = w.beginNested(NFTA_CMP_DATA);
            w.attrBytes(NFTA_DATA_VALUE, data, 0, data.length);
            w.endNested(d);
        }

        @Override
        public boolean equals(final Object o)
        {
            return o instanceof CmpEq c && c.sreg == sreg && Arrays.equals(c.data, data);
        }

        @Override
        public int hashCode()
        {
            return 31 * sreg + Arrays.hashCode(data);
        }

        @Override
        public String toString()
        {
            return "CmpEq[sreg=" + sreg + ", data=" + java.util.HexFormat.of().formatHex(data) + "]";
        }
    }

    /**
     * {@code payload load <len>b @ <base> header + <offset> => reg <dreg>}.
     *
     * @param base   e.g. {@link NfTables#NFT_PAYLOAD_NETWORK_HEADER}.
     * @param offset the byte offset in that header.
     * @param len    how many bytes.
     * @param dreg   the destination register.
     */
    record Payload(int base, int offset, int len, int dreg) implements NftExpr
    {
        @Override
        public String name()
        {
            return "payload";
        }

        @Override
        public void encodeData(final NetlinkWriter w)
        {
            w.attrU32BE(NFTA_PAYLOAD_DREG, dreg);
            w.attrU32BE(NFTA_PAYLOAD_BASE, base);
            w.attrU32BE(NFTA_PAYLOAD_OFFSET, offset);
            w.attrU32BE(NFTA_PAYLOAD_LEN, len);
        }
    }

    /**
     * {@code lookup reg <sreg> set <set> dreg <dreg>}: a map lookup whose data lands from {@code dreg} on.
     *
     * @param set  the map's name.
     * @param sreg the key's register.
     * @param dreg the data's first register.
     */
    record Lookup(String set, int sreg, int dreg) implements NftExpr
    {
        @Override
        public String name()
        {
            return "lookup";
        }

        @Override
        public void encodeData(final NetlinkWriter w)
        {
            w.attrString(NFTA_LOOKUP_SET, set);
            w.attrU32BE(NFTA_LOOKUP_SREG, sreg);
            w.attrU32BE(NFTA_LOOKUP_DREG, dreg);
        }
    }

    /**
     * {@code nat <type> <family> addr <regAddrMin>..<regAddrMax> proto <regProtoMin>..<regProtoMax> flags}.
     *
     * @param type        e.g. {@link NfTables#NFT_NAT_SNAT}.
     * @param family      e.g. {@link NfTables#NFPROTO_IPV6}.
     * @param regAddrMin  the register of the first address.
     * @param regAddrMax  the register of the last address.
     * @param regProtoMin the register of the first port.
     * @param regProtoMax the register of the last port.
     * @param flags       NF_NAT_RANGE_* flags.
     */
    record Nat(int type, int family, int regAddrMin, int regAddrMax, int regProtoMin, int regProtoMax, int flags)
        implements NftExpr
    {
        @Override
        public String name()
        {
            return "nat";
        }

        @Override
        public void encodeData(final NetlinkWriter w)
        {
            w.attrU32BE(NFTA_NAT_TYPE, type);
            w.attrU32BE(NFTA_NAT_FAMILY, family);
            w.attrU32BE(NFTA_NAT_REG_ADDR_MIN, regAddrMin);
            w.attrU32BE(NFTA_NAT_REG_ADDR_MAX, regAddrMax);
            w.attrU32BE(NFTA_NAT_REG_PROTO_MIN, regProtoMin);
            w.attrU32BE(NFTA_NAT_REG_PROTO_MAX, regProtoMax);
            w.attrU32BE(NFTA_NAT_FLAGS, flags);
        }
    }
}
