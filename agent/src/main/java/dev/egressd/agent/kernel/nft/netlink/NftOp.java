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
     * @param set  the set or map.
     * @param key  the key bytes.
     * @param data the data bytes of a map element, or null for a set.
     */
    record AddElement(String set, byte[] key, byte[] data) implements NftOp
    {
        /**
         * An element; copies the bytes.
         *
         * @param set  the set or map.
         * @param key  the key bytes.
         * @param data the data bytes, or null.
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
        }

        @Override
        public String describe()
        {
            return "add element " + set + " key " + HexFormat.of().formatHex(key)
                + (data == null ? "" : " data " + HexFormat.of().formatHex(data));
        }

        @Override
        public boolean equals(final Object o)
        {
            return o instanceof AddElement a && a.set.equals(set) && Arrays.equals(a.key, key) && Arrays.equals(a.data, data);
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
     * NFT_MSG_DELSETELEM of one element: refused (ENOENT) if the key is absent.
     *
     * @param set the set or map.
     * @param key the key bytes.
     */
    record DeleteElement(String set, byte[] key) implements NftOp
    {
        /**
         * An element to delete; copies the key.
         *
         * @param set the set or map.
         * @param key the key bytes.
         */
        public DeleteElement
        {
            NftNetlink.checkName("set", set);
            NftElements.checkBytes("key", key);
            key = key.clone();
        }

        @Override
        public String describe()
        {
            return "delete element " + set + " key " + HexFormat.of().formatHex(key);
        }

        @Override
        public boolean equals(final Object o)
        {
            return o instanceof DeleteElement d && d.set.equals(set) && Arrays.equals(d.key, key);
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
