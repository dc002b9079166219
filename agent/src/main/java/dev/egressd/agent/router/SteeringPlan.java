package dev.egressd.agent.router;

import dev.egressd.agent.kernel.rtnetlink.PolicyRouting;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting.Route;
import dev.egressd.agent.kernel.rtnetlink.PolicyRouting.Rule;
import dev.egressd.agent.region.RegionStore;
import dev.egressd.agent.region.RegionStore.HostRecord;
import dev.egressd.agent.region.RegionStore.RegionPair;
import dev.egressd.agent.region.RegionStore.RegionSnapshot;
import dev.egressd.agent.region.RegionStore.SlotRecord;
import dev.egressd.core.model.Ipv4Address;

import java.net.Inet4Address;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * What the router's kernel should hold for one region snapshot (docs/region.md, "The router"): a pure function of
 * the snapshot, the block size and the routing table base, with no I/O.
 *
 * <ul>
 * <li>{@link #elements()}: each held slot's block as {@code shared address . first-last -> host mark}, once per
 *     family the host has an address of (the same key goes into the port map and the ICMP id map of that
 *     family);</li>
 * <li>{@link #rules()}: one {@code fwmark M lookup base+M pref base+M} per host mark and family;</li>
 * <li>{@link #routes()}: in each host's table, one route per shared address of the family via the host's address
 *     of that family;</li>
 * <li>{@link #shared()}: every shared address of the region's pairs (the fencing rule checks packets from them).</li>
 * </ul>
 * A quarantined slot, a slot whose host key is gone or has no mark yet, and a slot of an unknown pair get no
 * element: their block is refused, which is the fencing. A slot marked leaving keeps its element until the
 * handover rewrites the slot.
 *
 * @param elements each element's key to its mark.
 * @param rules    the ip rules.
 * @param routes   the routes.
 * @param shared   the shared addresses of both families.
 */
public record SteeringPlan(Map<Key, Integer> elements, Set<Rule> rules, Set<Route> routes, Set<InetAddress> shared)
{
    /** The largest routing table the router owns is {@code base + MAX_HOST_MARK}. */
    public static final int MAX_TABLE_BASE = Integer.MAX_VALUE - RegionStore.MAX_HOST_MARK;

    /**
     * One interval element's key: a shared address and a block's ports (for the ICMP id maps, the same interval
     * of echo ids).
     *
     * @param address   the shared address (its family picks the map).
     * @param firstPort the block's first port.
     * @param lastPort  the block's last port.
     */
    public record Key(InetAddress address, int firstPort, int lastPort)
    {
        /**
         * Checks the key.
         *
         * @param address   the address.
         * @param firstPort the first port.
         * @param lastPort  the last port.
         */
        public Key
        {
            Objects.requireNonNull(address, "address");
            if (firstPort < 0 || lastPort > 65535 || firstPort > lastPort)
            {
                throw new IllegalArgumentException("ports " + firstPort + "-" + lastPort + " are not an interval");
            }
        }

        /** @return whether the address is IPv6. */
        public boolean ipv6()
        {
            return address instanceof Inet6Address;
        }

        @Override
        public String toString()
        {
            return address.getHostAddress() + " . " + firstPort + "-" + lastPort;
        }
    }

    /**
     * Freezes the parts.
     *
     * @param elements the elements.
     * @param rules    the rules.
     * @param routes   the routes.
     * @param shared   the shared addresses.
     */
    public SteeringPlan
    {
        elements = Collections.unmodifiableMap(new HashMap<>(elements));
        rules = Collections.unmodifiableSet(new HashSet<>(rules));
        routes = Collections.unmodifiableSet(new HashSet<>(routes));
        shared = Collections.unmodifiableSet(new HashSet<>(shared));
    }

    /** The plan of an empty region. */
    public static final SteeringPlan EMPTY = new SteeringPlan(Map.of(), Set.of(), Set.of(), Set.of());

    /**
     * The plan of a snapshot.
     *
     * @param snapshot  the region's keys.
     * @param blockSize ports per block (block b covers {@code [b*size, (b+1)*size-1]}).
     * @param tableBase the routing table base: host mark M uses table and rule priority {@code base+M}.
     * @return the plan.
     * @throws IllegalArgumentException for a block size that is not a power of two in 1..65536 or a base out of
     *                                  range.
     */
    public static SteeringPlan of(final RegionSnapshot snapshot, final int blockSize, final int tableBase)
    {
        if (blockSize < 1 || blockSize > 65536 || Integer.bitCount(blockSize) != 1)
        {
            throw new IllegalArgumentException("block-size must be a power of two in 1..65536, got " + blockSize);
        }
        if (tableBase < 1 || tableBase > MAX_TABLE_BASE)
        {
            throw new IllegalArgumentException("router-table-base must be in 1.." + MAX_TABLE_BASE + ", got " + tableBase);
        }
        final Set<InetAddress> shared = new HashSet<>();
        // each pair's addresses, parsed once (a snapshot has up to 64 slots per pair)
        final Map<Ipv4Address, InetAddress[]> addresses = new HashMap<>();
        for (final RegionPair pair : snapshot.pairs().values())
        {
            final InetAddress v4 = address(pair.pair().ipv4().toString());
            final InetAddress v6 = address(pair.pair().ipv6().toString());
            shared.add(v4);
            shared.add(v6);
            addresses.put(pair.pair().ipv4(), new InetAddress[] {v4, v6});
        }
        final Map<String, HostAddresses> hosts = new HashMap<>();
        for (final HostRecord host : snapshot.hosts().values())
        {
            if (host.mark() >= 1 && host.mark() <= RegionStore.MAX_HOST_MARK)
            {
                hosts.put(host.id(), HostAddresses.of(host));
            }
        }
        final Map<Key, Integer> elements = new HashMap<>();
        for (final SlotRecord slot : snapshot.slots().values())
        {
            final HostAddresses host = slot.host() == null ? null : hosts.get(slot.host());
            final InetAddress[] pair = addresses.get(slot.id().pair());
            final long first = (long) slot.id().block() * blockSize;
            final long last = first + blockSize - 1;
            if (host == null || pair == null || slot.id().block() < 0 || last > 65535)
            {
                continue; // refused: quarantined, host gone or unmarked, pair unknown, or no such block
            }
            if (host.ipv4 != null)
            {
                elements.put(new Key(pair[0], (int) first, (int) last), host.mark);
            }
            if (host.ipv6 != null)
            {
                elements.put(new Key(pair[1], (int) first, (int) last), host.mark);
            }
        }
        final Set<Rule> rules = new HashSet<>();
        final Set<Route> routes = new HashSet<>();
        for (final HostAddresses host : hosts.values())
        {
            final int table = tableBase + host.mark;
            for (final InetAddress gateway : new InetAddress[] {host.ipv4, host.ipv6})
            {
                if (gateway == null)
                {
                    continue;
                }
                final int family = family(gateway);
                rules.add(new Rule(family, host.mark, table, table));
                for (final InetAddress destination : shared)
                {
                    if (family(destination) == family)
                    {
                        routes.add(new Route(family, table, destination, family == PolicyRouting.AF_INET ? 32 : 128,
                            gateway));
                    }
                }
            }
        }
        return new SteeringPlan(elements, rules, routes, shared);
    }

    /**
     * The address family of an address.
     *
     * @param address the address.
     * @return {@link PolicyRouting#AF_INET} or {@link PolicyRouting#AF_INET6}.
     */
    public static int family(final InetAddress address)
    {
        return address instanceof Inet4Address ? PolicyRouting.AF_INET : PolicyRouting.AF_INET6;
    }

    /**
     * Parses an address literal (never a name: no lookup happens for a literal).
     *
     * @param literal an IPv4 or IPv6 literal.
     * @return the address.
     * @throws IllegalArgumentException if it is not a literal.
     */
    public static InetAddress address(final String literal)
    {
        if (literal == null || !(literal.indexOf(':') >= 0 || literal.matches("[0-9.]+")))
        {
            throw new IllegalArgumentException("not an address literal: " + literal);
        }
        try
        {
            return InetAddress.getByName(literal);
        }
        catch (final UnknownHostException e)
        {
            throw new IllegalArgumentException("not an address literal: " + literal, e);
        }
    }

    /** A marked host's first address of each family (null when it has none). */
    private record HostAddresses(int mark, InetAddress ipv4, InetAddress ipv6)
    {
        static HostAddresses of(final HostRecord host)
        {
            InetAddress v4 = null;
            InetAddress v6 = null;
            for (final String text : host.addresses())
            {
                final InetAddress a;
                try
                {
                    a = address(text);
                }
                catch (final IllegalArgumentException e)
                {
                    continue; // the store checks addresses; one it let through steers nothing
                }
                if (a instanceof Inet4Address && v4 == null)
                {
                    v4 = a;
                }
                else if (a instanceof Inet6Address && v6 == null)
                {
                    v6 = a;
                }
            }
            return new HostAddresses(host.mark(), v4, v6);
        }
    }

    /**
     * What turns one plan into another. An element whose mark changes is in both {@code deleteElements} and
     * {@code addElements} (nft has no replace: one transaction deletes and adds it).
     *
     * @param addElements    elements to add, with their marks.
     * @param deleteElements element keys to delete.
     * @param addRules       rules to add.
     * @param deleteRules    rules to delete.
     * @param addRoutes      routes to add (or replace).
     * @param deleteRoutes   routes to delete.
     * @param addShared      shared addresses to add to the fencing sets.
     * @param deleteShared   shared addresses to delete from them.
     */
    public record Diff(Map<Key, Integer> addElements, Set<Key> deleteElements, Set<Rule> addRules,
        Set<Rule> deleteRules, Set<Route> addRoutes, Set<Route> deleteRoutes, Set<InetAddress> addShared,
        Set<InetAddress> deleteShared)
    {
        /** @return whether nothing changes. */
        public boolean isEmpty()
        {
            return addElements.isEmpty() && deleteElements.isEmpty() && addRules.isEmpty() && deleteRules.isEmpty()
                && addRoutes.isEmpty() && deleteRoutes.isEmpty() && addShared.isEmpty() && deleteShared.isEmpty();
        }

        /** @return whether the nft table changes (elements or shared addresses). */
        public boolean changesTable()
        {
            return !addElements.isEmpty() || !deleteElements.isEmpty() || !addShared.isEmpty()
                || !deleteShared.isEmpty();
        }
    }

    /**
     * The diff from this plan to another.
     *
     * @param to the plan wanted.
     * @return what to add and delete.
     */
    public Diff diffTo(final SteeringPlan to)
    {
        final Map<Key, Integer> add = new HashMap<>();
        final Set<Key> delete = new HashSet<>();
        to.elements.forEach((k, m) ->
        {
            final Integer old = elements.get(k);
            if (!m.equals(old))
            {
                add.put(k, m);
                if (old != null)
                {
                    delete.add(k);
                }
            }
        });
        elements.keySet().forEach(k ->
        {
            if (!to.elements.containsKey(k))
            {
                delete.add(k);
            }
        });
        return new Diff(add, delete, minus(to.rules, rules), minus(rules, to.rules), minus(to.routes, routes),
            minus(routes, to.routes), minus(to.shared, shared), minus(shared, to.shared));
    }

    /**
     * This plan with a diff applied (deletions first, then additions), as the kernel would hold it.
     *
     * @param diff the diff.
     * @return the resulting plan.
     */
    public SteeringPlan with(final Diff diff)
    {
        final Map<Key, Integer> e = new HashMap<>(elements);
        diff.deleteElements().forEach(e::remove);
        e.putAll(diff.addElements());
        final Set<Rule> r = new HashSet<>(rules);
        r.removeAll(diff.deleteRules());
        r.addAll(diff.addRules());
        final Set<Route> t = new HashSet<>(routes);
        t.removeAll(diff.deleteRoutes());
        t.addAll(diff.addRoutes());
        final Set<InetAddress> s = new HashSet<>(shared);
        s.removeAll(diff.deleteShared());
        s.addAll(diff.addShared());
        return new SteeringPlan(e, r, t, s);
    }

    private static <T> Set<T> minus(final Set<T> a, final Set<T> b)
    {
        final Set<T> out = new HashSet<>(a);
        out.removeAll(b);
        return out;
    }
}
