package dev.egressd.agent.conntrack;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

/**
 * Flows of a guest to delete from conntrack, at a time. Three cases:
 * <ul>
 *     <li>{@link Kind#ALL_OR_VIA}, no egress: every flow of the guest addresses (machine deleted, guest address
 *     given up);</li>
 *     <li>{@link Kind#ALL_OR_VIA}, an egress: the guest's flows translated to that address (an egress given up,
 *     after the drain time);</li>
 *     <li>{@link Kind#UNHELD}: a machine that became static, or a static machine first seen, see there.</li>
 * </ul>
 *
 * @param due     when it runs ({@code nanoTime}).
 * @param machine the machine it is for.
 * @param guest4  the IPv4 guest address whose flows are meant, or null.
 * @param guest6  the IPv6 guest address whose flows are meant, or null.
 * @param egress4 {@link Kind#ALL_OR_VIA}: only flows translated to this IPv4 address, or null for all.
 * @param egress6 {@link Kind#ALL_OR_VIA}: only flows translated to this IPv6 address, or null for all.
 * @param kind    which of the flows.
 * @param why     for the log line.
 */
record FlowDeletion(long due, String machine, Ipv4Address guest4, Ipv6Address guest6, Ipv4Address egress4,
    Ipv6Address egress6, Kind kind, String why)
{
    /** Which of a guest's flows a deletion takes. */
    enum Kind
    {
        /** Every flow of the guest addresses (no egress), or the ones translated to the given egress. */
        ALL_OR_VIA,
        /**
         * Source-translated flows translated to none of the egress addresses egressd holds when the deletion runs
         * (nor to the machine's egress then): a machine that became static (host or pending to a static scope), or a
         * static machine first seen (at start, or registered fresh: a move the monitor never saw), loses the flows it
         * masqueraded, which left from the host's address. Flows translated to a held address are kept: its new
         * pair's, and those of a pair it left that is still draining (docs/design.md, invariant 3, allows a static
         * address the operator allowlisted; that pair's own drain deletion removes them when its drain time ends).
         */
        UNHELD
    }

    /**
     * The same deletion, due again later (after a failed attempt).
     *
     * @param later when.
     * @return the copy.
     */
    FlowDeletion retryAt(final long later)
    {
        return new FlowDeletion(later, machine, guest4, guest6, egress4, egress6, kind, why);
    }

    /**
     * Whether this deletion is still wanted when it comes due, given the machine as it is now.
     *
     * @param current the machine now, or null once it is deleted.
     * @return false when the machine moved back to the egress whose flows were to go (they are right again), or, for
     *     {@link Kind#UNHELD}, when the machine is deleted (its own deletion takes every flow) or no longer static
     *     (masquerade is right for it again).
     */
    boolean stillWanted(final TrackedMachine current)
    {
        if (kind == Kind.ALL_OR_VIA)
        {
            return current == null || !(egress4 != null && egress4.equals(current.egress4())
                || egress6 != null && egress6.equals(current.egress6()));
        }
        return current != null && TrackedMachine.isStatic(current.scope());
    }

    /**
     * Whether a conntrack entry is one to delete. Allocates nothing.
     *
     * @param e        the entry.
     * @param current4 the machine's IPv4 egress now (UNHELD only), or null.
     * @param current6 the machine's IPv6 egress now (UNHELD only), or null.
     * @param held     the egress addresses egressd holds now (UNHELD only).
     * @return true to delete it.
     */
    boolean matches(final ConntrackEvent e, final Ipv4Address current4, final Ipv6Address current6,
        final HeldAddresses held)
    {
        if (e.isIpv4())
        {
            if (guest4 == null || e.origSrcV4() != guest4.bits())
            {
                return false;
            }
            final int to = e.replyDstV4();
            return switch (kind)
            {
                case ALL_OR_VIA -> egress4 == null || is(egress4, to);
                case UNHELD -> translated(e) && !held.contains4(to) && !is(current4, to);
            };
        }
        if (guest6 == null || e.origSrcHigh() != guest6.high() || e.origSrcLow() != guest6.low())
        {
            return false;
        }
        final long high = e.replyDstHigh();
        final long low = e.replyDstLow();
        return switch (kind)
        {
            case ALL_OR_VIA -> egress6 == null || is(egress6, high, low);
            case UNHELD -> translated(e) && !held.contains6(high, low) && !is(current6, high, low);
        };
    }

    /**
     * What the log line says after the reason.
     *
     * @param held the addresses held when it ran.
     * @return the text.
     */
    String scopeText(final HeldAddresses held)
    {
        return kind == Kind.UNHELD ? ", all but via " + held
            : egress4 == null ? "" : ", via " + egress4 + " " + egress6;
    }

    private static boolean translated(final ConntrackEvent e)
    {
        return (e.status() & NetlinkConstants.IPS_SRC_NAT) != 0;
    }

    private static boolean is(final Ipv4Address a, final int bits)
    {
        return a != null && a.bits() == bits;
    }

    private static boolean is(final Ipv6Address a, final long high, final long low)
    {
        return a != null && a.high() == high && a.low() == low;
    }
}
