package dev.egressd.agent.kernel.nft.netlink;

import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;

/**
 * One change in an nf_tables batch ({@link NftNetlink#commit}). Keys and data are the bytes the kernel
 * stores (see {@link NftElements} for egressd's layouts).
 */
public sealed interface NftOp
{
    /**
     * What the change is, for errors: e.g. {@code add element snat4 key 0a000002}.
     *
     * @return the description.
     */
    String describe();

    /**
     * NFT_MSG_NEWSETELEM of one element, without NLM_F_EXCL: adding an element that is there with the same
     * data changes nothing, with other data is refused (EEXIST).
     *
     * @param set    the set or map.
     * @param key    the key bytes (the first key of an interval).
     * @param data   the data bytes of a map element, or null for a set.
     * @param keyEnd the last key of an interval of a concatenated interval set (NFTA_SET_ELEM_KEY_END), or null.
     */
    record AddElement(String set, byte[] key, byte[] data, byte[] keyEnd) implements NftOp
    {
        /**
         * An element; copies the bytes.
         *
         * @param set    the set or map.
         * @param key    the key bytes.
         * @param data   the data bytes, or null.
         * @param keyEnd the interval's last key (as long as the key), or null.
         */
        public AddElement
        {
            NftNetlink.checkName("set", set);
            NftElements.checkBytes("key", key);
            key = key.clone();
            if (data != null)
            {
                NftElements.checkBytes("data", data);
                data = data.clone();
            }
            keyEnd = checkKeyEnd(key, keyEnd);
        }

        /**
         * An element that is not an interval; copies the bytes.
         *
         * @param set  the set or map.
         * @param key  the key bytes.
         * @param data the data bytes, or null.
         */
        public AddElement(final String set, final byte[] key, final byte[] data)
        {
            this(set, key, data, null);
        }

        @Override
        public String describe()
        {
            return "add element " + set + " key " + HexFormat.of().formatHex(key)
                + (keyEnd == null ? "" : "-" + HexFormat.of().formatHex(keyEnd))
                + (data == null ? "" : " data " + HexFormat.of().formatHex(data));
        }

        @Override
        public boolean equals(final Object o)
        {
            return o instanceof AddElement a && a.set.equals(set) && Arrays.equals(a.key, key)
                && Arrays.equals(a.data, data) && Arrays.equals(a.keyEnd, keyEnd);
        }

        @Override
        public int hashCode()
        {
            return set.hashCode() * 31 + Arrays.hashCode(key);
        }

        @Override
        public String toString()
        {
            return describe();
        }
    }

    /**
     * NFT_MSG_DELSETELEM of one element: refused (ENOENT) if the key (and, for an interval, its last key) is absent.
     *
     * @param set    the set or map.
     * @param key    the key bytes.
     * @param keyEnd the last key of an interval of a concatenated interval set, or null.
     */
    record DeleteElement(String set, byte[] key, byte[] keyEnd) implements NftOp
    {
        /**
         * An element to delete; copies the keys.
         *
         * @param set    the set or map.
         * @param key    the key bytes.
         * @param keyEnd the interval's last key (as long as the key), or null.
         */
        public DeleteElement
        {
            NftNetlink.checkName("set", set);
            NftElements.checkBytes("key", key);
            key = key.clone();
            keyEnd = checkKeyEnd(key, keyEnd);
        }

        /**
         * An element that is not an interval; copies the key.
         *
         * @param set the set or map.
         * @param key the key bytes.
         */
        public DeleteElement(final String set, final byte[] key)
        {
            this(set, key, null);
        }

        @Override
        public String describe()
        {
            return "delete element " + set + " key " + HexFormat.of().formatHex(key)
                + (keyEnd == null ? "" : "-" + HexFormat.of().formatHex(keyEnd));
        }

        @Override
        public boolean equals(final Object o)
        {
            return o instanceof DeleteElement d && d.set.equals(set) && Arrays.equals(d.key, key)
                && Arrays.equals(d.keyEnd, keyEnd);
        }

        @Override
        public int hashCode()
        {
            return set.hashCode() * 31 + Arrays.hashCode(key);
        }

        @Override
        public String toString()
        {
            return describe();
        }
    }

    /** A copy of an interval's last key, or null; it must be as long as the first. */
    private static byte[] checkKeyEnd(final byte[] key, final byte[] keyEnd)
    {
        if (keyEnd == null)
        {
            return null;
        }
        if (keyEnd.length != key.length)
        {
            throw new IllegalArgumentException("keyEnd: " + keyEnd.length + " bytes, not as long as the key ("
                + key.length + ")");
        }
        return keyEnd.clone();
    }

    /**
     * NFT_MSG_NEWRULE appending a rule to a chain, with a comment in its user data (nft lists it as
     * {@code comment "..."}).
     *
     * @param chain   the chain.
     * @param exprs   the expressions, in order.
     * @param comment the comment, or null.
     */
    record AddRule(String chain, List<NftExpr> exprs, String comment) implements NftOp
    {
        /**
         * A rule.
         *
         * @param chain   the chain.
         * @param exprs   the expressions, at least one.
         * @param comment the comment (printable ASCII, at most 127 bytes), or null.
         */
        public AddRule
        {
            NftNetlink.checkName("chain", chain);
            exprs = List.copyOf(exprs);
            if (exprs.isEmpty())
            {
                throw new IllegalArgumentException("exprs: a rule needs at least one expression");
            }
            if (comment != null && (comment.length() > 127 || !comment.matches("[ -~]*")))
            {
                throw new IllegalArgumentException("comment: '" + comment + "' is not printable ASCII of at most 127 bytes");
            }
        }

        @Override
        public String describe()
        {
            return "add rule " + chain + (comment == null ? "" : " comment \"" + comment + "\"");
        }
    }
}
