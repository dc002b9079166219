package dev.egressd.agent.kernel;

import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.agent.kernel.nft.NftException;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;

import java.io.IOException;
import java.util.List;
import java.util.Map;

/**
 * The real kernel for the control loop: {@link KernelDataplane} (egressd's nftables table and the uplink
 * addresses it owns), with its errors turned into {@link KernelException}.
 *
 * <p>The dataplane is opened on first use rather than in the constructor, because it may only be used from
 * the thread that opened it and only the control loop's thread calls a {@link Kernel}.
 */
public final class NftKernel implements Kernel
{
    /**
     * The listings of the nft table that load every rule (O(table) in libnftables 1.0.6: the per-guest IPv6
     * chains' rules, the fixed chains' fingerprints) take at most a fifth of the loop's time; the sets and maps
     * are read every reconcile (see {@code NftDataplane}, "Deep and shallow checks"). Measured by
     * {@code scripts/bench-drift}: at 4,000 machines a deep cycle costs about 1 s, so one comes every 5-6 s, and
     * that is how long a per-guest chain changed by hand takes to be repaired there; on small hosts every
     * reconcile is deep.
     */
    static final int DEEP_CHECK_FACTOR = 4;

    private final DataplaneConfig config;
    private KernelDataplane dataplane;

    /**
     * Creates the kernel; nothing is opened yet.
     *
     * @param config the table, uplink, guest interfaces and destination cap.
     */
    public NftKernel(final DataplaneConfig config)
    {
        this.config = config;
    }

    @Override
    public boolean ensureTable() throws KernelException
    {
        try
        {
            return dataplane().ensureTable();
        }
        catch (final IOException e)
        {
            throw wrap(e);
        }
    }

    @Override
    public KernelPlan read() throws KernelException
    {
        try
        {
            return dataplane().read();
        }
        catch (final NftException e)
        {
            if (!e.isNotFound())
            {
                throw wrap(e);
            }
            // The table was deleted by hand: put the static part back so the diff can refill it.
            ensureTable();
            return read();
        }
        catch (final IOException e)
        {
            throw wrap(e);
        }
    }

    @Override
    public void apply(final List<PlanChange> changes) throws KernelException
    {
        try
        {
            dataplane().apply(changes);
        }
        catch (final IOException e)
        {
            throw wrap(e);
        }
    }

    @Override
    public Map<String, Long> counters() throws KernelException
    {
        try
        {
            return dataplane().counters();
        }
        catch (final IOException e)
        {
            throw wrap(e);
        }
    }

    /**
     * How many deep reads and deep checks of the nft table were done, for the drift benchmark.
     *
     * @return {deep reads, deep checks}; zeros before the dataplane is opened.
     */
    public int[] deepCounts()
    {
        return dataplane == null ? new int[2] : dataplane.deepCounts();
    }

    private KernelDataplane dataplane() throws IOException
    {
        if (dataplane == null)
        {
            dataplane = KernelDataplane.open(config);
            dataplane.paceDeepChecks(DEEP_CHECK_FACTOR);
        }
        return dataplane;
    }

    private static KernelException wrap(final IOException e)
    {
        return new KernelException((e instanceof NftException ? "nft: " : "rtnetlink: ") + e.getMessage(), e);
    }
}
