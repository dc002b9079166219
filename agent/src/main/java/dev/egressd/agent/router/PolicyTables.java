package dev.egressd.agent.router;

import dev.egressd.agent.kernel.rtnetlink.PolicyRouting;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting.Route;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting.Rule;
import dev.egressd.agent.region.RegionStore;

import java.io.IOException;
import java.net.InetAddress;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * The router's ip rules and routes (docs/region.md, "The router"), in the tables it owns: {@code [base+1,
 * base+4095]}; nothing outside that range is read or changed. A change is made in two halves around the nft
 * transaction: {@link #add} before it (a host's rule and routes exist before any element marks packets for it),
 * {@link #remove} after it (no element marks packets for a host when its rule and routes go). What the kernel holds
 * is read back by {@link #repair}.
 */
public final class PolicyTables
{
    private static final int[] FAMILIES = {PolicyRouting.AF_INET, PolicyRouting.AF_INET6};

    private final PolicyRouting routing;
    private final int first;
    private final int last;
    private Set<Rule> rules;
    private Set<Route> routes;

    /**
     * The tables of a base.
     *
     * @param routing   rtnetlink.
     * @param tableBase the base: host mark M uses table {@code base+M}.
     */
    public PolicyTables(final PolicyRouting routing, final int tableBase)
    {
        this.routing = Objects.requireNonNull(routing, "routing");
        this.first = tableBase + 1;
        this.last = tableBase + RegionStore.MAX_HOST_MARK;
    }

    /**
     * Adds the plan's rules and routes that are missing (a route to a destination that changed its gateway is
     * replaced).
     *
     * @param plan the plan.
     * @return how many were added.
     * @throws IOException if rtnetlink refuses.
     */
    public int add(final SteeringPlan plan) throws IOException
    {
        known();
        try
        {
            return addKnown(plan);
        }
        catch (final IOException | RuntimeException e)
        {
            forget(); // re-read before the next change: the kernel may hold part of this one
            throw e;
        }
    }

    private int addKnown(final SteeringPlan plan) throws IOException
    {
        int n = 0;
        for (final Rule rule : plan.rules())
        {
            if (!rules.contains(rule))
            {
                routing.addRule(rule);
                rules.add(rule);
                n++;
            }
        }
        for (final Route route : plan.routes())
        {
            if (!routes.contains(route))
            {
                routing.replaceRoute(route);
                // a replace takes the place of the route to the same destination in the same table
                routes.removeIf(r -> sameDestination(r, route));
                routes.add(route);
                n++;
            }
        }
        return n;
    }

    /**
     * Deletes the rules and routes the plan does not have.
     *
     * @param plan the plan.
     * @return how many were deleted.
     * @throws IOException if rtnetlink refuses.
     */
    public int remove(final SteeringPlan plan) throws IOException
    {
        known();
        try
        {
            return removeKnown(plan);
        }
        catch (final IOException | RuntimeException e)
        {
            forget(); // re-read before the next change: the kernel may hold part of this one
            throw e;
        }
    }

    private int removeKnown(final SteeringPlan plan) throws IOException
    {
        int n = 0;
        for (final Route route : List.copyOf(routes))
        {
            if (!plan.routes().contains(route))
            {
                routing.deleteRoute(route);
                routes.remove(route);
                n++;
            }
        }
        for (final Rule rule : List.copyOf(rules))
        {
            if (!plan.rules().contains(rule))
            {
                routing.deleteRule(rule);
                rules.remove(rule);
                n++;
            }
        }
        return n;
    }

    /**
     * Reads the owned rules and routes back and makes them the plan's.
     *
     * @param plan the plan.
     * @return how many rules and routes were added or deleted.
     * @throws IOException if rtnetlink refuses.
     */
    public int repair(final SteeringPlan plan) throws IOException
    {
        reread();
        return add(plan) + remove(plan);
    }

    /** Forgets what the kernel holds: the next {@link #add} or {@link #remove} reads it back first. */
    public void reread()
    {
        forget();
    }

    private void forget()
    {
        rules = null;
        routes = null;
    }

    private void known() throws IOException
    {
        if (rules != null && routes != null)
        {
            return;
        }
        final Set<Rule> r = new HashSet<>();
        final Set<Route> t = new HashSet<>();
        for (final int family : FAMILIES)
        {
            r.addAll(routing.rules(family, first, last));
            t.addAll(routing.routes(family, first, last));
        }
        rules = r;
        routes = t;
    }

    private static boolean sameDestination(final Route a, final Route b)
    {
        final InetAddress da = a.destination();
        return a.family() == b.family() && a.table() == b.table() && da.equals(b.destination())
            && a.prefixLength() == b.prefixLength();
    }
}
