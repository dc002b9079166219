package dev.egressd.agent.daemon;

import dev.egressd.agent.netlink.RtnetlinkAddresses;
import dev.egressd.agent.nft.NftDataplane;
import dev.egressd.agent.nft.NftException;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The real kernel: egressd's nftables table through {@link NftDataplane} and the egress addresses on the uplink
 * through {@link RtnetlinkAddresses}.
 *
 * <p>Order of {@link #apply}: uplink additions first (an address is on the uplink before any map points a guest at
 * it), then the nft changes as one transaction, then uplink removals (an address leaves only after nothing points
 * at it). {@link dev.egressd.core.plan.PlanDiff} already orders the changes that way.
 *
 * <p>{@link #read} reports every /32 and /128 on the uplink; the control loop only ever removes those it manages.
 */
public final class NftKernel implements Kernel
{
    private final NftDataplane nft;
    private final RtnetlinkAddresses addresses;
    private final String uplink;

    /**
     * Creates the kernel.
     *
     * @param nft       the nft dataplane.
     * @param addresses the rtnetlink address client.
     * @param uplink    the uplink interface.
     */
    public NftKernel(final NftDataplane nft, final RtnetlinkAddresses addresses, final String uplink)
    {
        this.nft = nft;
        this.addresses = addresses;
        this.uplink = uplink;
    }

    @Override
    public boolean ensureTable() throws KernelException
    {
        try
        {
            return nft.ensureTable();
        }
        catch (final NftException e)
        {
            throw new KernelException("nft: " + e.getMessage(), e);
        }
    }

    @Override
    public KernelPlan read() throws KernelException
    {
        final List<PlanElement> elements = new ArrayList<>();
        try
        {
            elements.addAll(nft.read().elements());
        }
        catch (final NftException e)
        {
            if (!e.isNotFound())
            {
                throw new KernelException("nft: " + e.getMessage(), e);
            }
        }
        try
        {
            for (final Ipv4Address a : addresses.listIpv4(uplink))
            {
                elements.add(new PlanElement.Uplink4(a));
            }
            for (final Ipv6Address a : addresses.listIpv6(uplink))
            {
                elements.add(new PlanElement.Uplink6(a));
            }
        }
        catch (final IOException e)
        {
            throw new KernelException("rtnetlink: " + e.getMessage(), e);
        }
        return KernelPlan.of(elements);
    }

    @Override
    public void apply(final List<PlanChange> changes) throws KernelException
    {
        final List<PlanChange> table = new ArrayList<>();
        final List<PlanChange> removals = new ArrayList<>();
        try
        {
            for (final PlanChange change : changes)
            {
                final PlanElement e = change.element();
                final boolean uplinkChange = e instanceof PlanElement.Uplink4 || e instanceof PlanElement.Uplink6;
                if (!uplinkChange)
                {
                    table.add(change);
                }
                else if (change.op() == PlanChange.Op.REMOVE)
                {
                    removals.add(change);
                }
                else if (e instanceof PlanElement.Uplink4 u)
                {
                    addresses.add(uplink, u.address());
                }
                else
                {
                    addresses.add(uplink, ((PlanElement.Uplink6)e).address());
                }
            }
            if (!table.isEmpty())
            {
                nft.apply(table);
            }
            for (final PlanChange change : removals)
            {
                if (change.element() instanceof PlanElement.Uplink4 u)
                {
                    addresses.remove(uplink, u.address());
                }
                else
                {
                    addresses.remove(uplink, ((PlanElement.Uplink6)change.element()).address());
                }
            }
        }
        catch (final NftException e)
        {
            throw new KernelException("nft: " + e.getMessage(), e);
        }
        catch (final IOException e)
        {
            throw new KernelException("rtnetlink: " + e.getMessage(), e);
        }
    }

    @Override
    public Map<String, Long> counters() throws KernelException
    {
        try
        {
            return nft.counters();
        }
        catch (final NftException e)
        {
            throw new KernelException("nft: " + e.getMessage(), e);
        }
    }
}
