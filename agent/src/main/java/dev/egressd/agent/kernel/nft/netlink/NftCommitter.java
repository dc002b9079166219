package dev.egressd.agent.kernel.nft.netlink;

import java.io.IOException;
import java.util.List;

/** What commits nf_tables changes as one transaction: {@link NftNetlink}, or a fake in tests. */
@FunctionalInterface
public interface NftCommitter
{
    /**
     * Applies changes as ONE batch: all or none.
     *
     * @param ops the changes, in order; nothing is sent for none.
     * @throws NftRefusedException if the kernel refused a change (nothing changed).
     * @throws IOException         if the socket fails.
     */
    void commit(List<? extends NftOp> ops) throws IOException;
}
