package dev.egressd.agent.kernel.nft.netlink;

import java.io.IOException;
import java.util.List;
import java.util.Map;

/** What the dataplane asks of nf_tables over netlink, for one table: {@link NftNetlink}, or a fake in tests. */
public interface NfTablesClient
{
    /**
     * Applies changes as ONE batch: all or none.
     *
     * @param ops the changes, in order; nothing is sent for none.
     * @throws NftRefusedException if the kernel refused a change (nothing changed).
     * @throws IOException         if the socket fails.
     */
    void commit(List<? extends NftOp> ops) throws IOException;

    /**
     * The ruleset's generation id: it changes with every committed nf_tables transaction in the namespace.
     *
     * @return the id.
     * @throws IOException if the request fails.
     */
    int generation() throws IOException;

    /**
     * One set's or map's elements (NFT_MSG_GETSETELEM dump), started again if a change interrupted the dump.
     *
     * @param set the set or map.
     * @return the elements' keys and data as the kernel stores them.
     * @throws IOException if the request fails ({@code NetlinkException.isNotFound()} when the table or set is missing).
     */
    List<NftNetlink.Element> elements(String set) throws IOException;

    /**
     * The table's named counters.
     *
     * @return counter name to values.
     * @throws IOException if the request fails (ENOENT when the table is missing).
     */
    Map<String, NftNetlink.Counter> counters() throws IOException;

    /**
     * A chain's hook, policy and rules as a value that changes only when the chain is changed (counters'
     * figures left out), for noticing a hand change without listing the table's sets.
     *
     * @param chain the chain.
     * @return the fingerprint's bytes.
     * @throws IOException if the request fails ({@code NetlinkException.isNotFound()} when the table or chain is
     *                     missing).
     * @throws UnsupportedOperationException from a client that does not read chains (the host side's fakes).
     */
    default byte[] chainFingerprint(final String chain) throws IOException
    {
        throw new UnsupportedOperationException("this nf_tables client does not read chains");
    }

    /**
     * The names of the table's named sets and maps (anonymous ones left out), from one dump.
     *
     * @return the names; null when this client cannot list them (the caller asks libnftables then).
     * @throws IOException with ENOENT ({@code NetlinkException}) if the table is missing, or if the socket fails.
     */
    default java.util.Set<String> setNames() throws IOException
    {
        return null;
    }

    /**
     * The table without its elements: chains, rules, named sets and maps, named objects (one dump of each).
     *
     * @return the dump.
     * @throws IOException with ENOENT ({@code NetlinkException}) if the table is missing, or if the socket fails.
     * @throws UnsupportedOperationException from a client that does not read tables (the host side's fakes).
     */
    default NftNetlink.TableDump dumpTable() throws IOException
    {
        throw new UnsupportedOperationException("this nf_tables client does not dump tables");
    }

    /**
     * The table's named sets and maps without their elements (one dump).
     *
     * @return them.
     * @throws IOException with ENOENT ({@code NetlinkException}) if the table is missing, or if the socket fails.
     * @throws UnsupportedOperationException from a client that does not read tables.
     */
    default List<NftNetlink.SetInfo> sets() throws IOException
    {
        throw new UnsupportedOperationException("this nf_tables client does not dump sets");
    }
}
