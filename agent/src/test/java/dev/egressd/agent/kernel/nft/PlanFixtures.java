package dev.egressd.agent.kernel.nft;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanElement;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/** Plans of numbered lab machines: machine n is 10.77.0.(n+1) / fd77::(n+1) on tap-m{n}, block n. */
final class PlanFixtures
{
    private PlanFixtures()
    {
    }

    static Ipv4Address guest4(final int n)
    {
        return Ipv4Address.parse("10.77.0." + (n + 1));
    }

    static Ipv6Address guest6(final int n)
    {
        return Ipv6Address.parse("fd77::" + Integer.toHexString(n + 1));
    }

    /** Machine n on block {@code block} of pair 203.0.113.10 / 2001:db8:10::10. */
    static KernelPlan machine(final int n, final int block)
    {
        final Ipv4Address egress4 = Ipv4Address.parse("203.0.113.10");
        final Ipv6Address egress6 = Ipv6Address.parse("2001:db8:10::10");
        final int first = block * 1024;
        final int last = first + 1023;
        return KernelPlan.of(List.of(
            new PlanElement.Uplink4(egress4),
            new PlanElement.Uplink6(egress6),
            new PlanElement.Static4(guest4(n)),
            new PlanElement.Static6(guest6(n)),
            new PlanElement.Guest4("tap-m" + n, guest4(n)),
            new PlanElement.Guest6("tap-m" + n, guest6(n)),
            new PlanElement.Snat4(guest4(n), egress4, first, last),
            new PlanElement.Snat6(guest6(n), egress6, first, last)));
    }

    /** Machines with their own number as block. */
    static KernelPlan machines(final int... numbers)
    {
        final List<PlanElement> all = new ArrayList<>();
        for (final int n : numbers)
        {
            all.addAll(machine(n, n).elements());
        }
        return KernelPlan.of(all);
    }

    static KernelPlan withoutUplinks(final KernelPlan plan)
    {
        return KernelPlan.of(plan.elements().stream()
            .filter(e -> !(e instanceof PlanElement.Uplink4) && !(e instanceof PlanElement.Uplink6)).toList());
    }

    /** The small plan of the golden listing: machines 3, 1 and 2 (given out of order), without uplinks. */
    static KernelPlan goldenPlan()
    {
        return withoutUplinks(machines(3, 1, 2));
    }

    /** A meter entry added by hand to the golden table, as the kernel adds one for a guest's flow. */
    static final String GOLDEN_METER_ENTRY = "add element inet egressd cc4 { 10.77.0.2 . 198.51.100.10 }";

    /**
     * What {@code nft list table inet egressd} of nft 1.0.6 prints for {@link #goldenPlan()} and
     * {@link #GOLDEN_METER_ENTRY} on the default configuration: taken from the kernel, which
     * {@code NftDataplanePrivilegedTest} checks it against.
     *
     * @return the listing.
     */
    static String goldenListing()
    {
        try (InputStream in = PlanFixtures.class.getResourceAsStream("list-table-three-machines-nft-1.0.6.txt"))
        {
            if (in == null)
            {
                throw new IllegalStateException("list-table-three-machines-nft-1.0.6.txt is not on the test classpath");
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }
}
