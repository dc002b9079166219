package dev.egressd.agent.conntrack;

import dev.egressd.agent.refusals.RefusalLog;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Scope;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.LongSupplier;

/**
 * The machines as conntrack last heard of them, and the difference each new list makes: which machines to
 * (re-)register in the ledger or unregister, the guest index, and which flows go from conntrack, when. Runs on
 * the caller's thread (the control loop's, after each committed mutation); the monitor thread applies the result.
 *
 * <p>The rules, per machine:
 * <ul>
 *     <li>new: registered, with a fresh ledger handle (the lowest free one);</li>
 *     <li>port range, guest address, egress address or scope changed: re-registered (live connections are kept,
 *     as the kernel keeps their translation);</li>
 *     <li>deleted: unregistered and every flow of its guest addresses deleted at once (each live TCP flow is reset:
 *     intended); its handle is free again;</li>
 *     <li>a guest address given up: that address's flows deleted at once;</li>
 *     <li>the egress address changed (not on promotion, which keeps it): the flows still translated to the old
 *     address deleted after the drain time (the old address stays on the uplink that long);</li>
 *     <li>became static (host or pending to an app slot or a machine-scoped pair), or first seen static: its flows
 *     translated to no egress address egressd holds deleted at once, without a drain. Those are the flows it
 *     masqueraded, which left from the host's address, which a static machine must never use (docs/design.md,
 *     invariant 3). "First seen" covers a move the monitor never saw: egressd restarted between committing it and
 *     telling the monitor, or was down when it happened; on start every machine is new. Flows through its new
 *     pair, through a pair it left that is still draining (that pair's own drain deletion, scheduled when it left,
 *     removes them), and flows not translated at all, are kept;</li>
 *     <li>newly pending: a refusal-log line.</li>
 * </ul>
 */
final class MachineRegistry
{
    private static final int ANY_FIRST = 1;
    private static final int ANY_LAST = 65535;

    /**
     * What one new list of machines changes, for the monitor thread to apply in one go.
     *
     * @param index       the guest index of every machine now.
     * @param held        the egress addresses egressd holds now.
     * @param registers   machines to register or re-register.
     * @param unregisters machines deleted.
     * @param deletions   flows to delete, each when due.
     */
    record Update(GuestIndex index, HeldAddresses held, List<TrackedMachine> registers,
        List<TrackedMachine> unregisters, List<FlowDeletion> deletions)
    {
    }

    private final RefusalLog refusals;
    private final LongSupplier nanoTime;
    /** By id, in id order (the allocator's): a whole diff unregisters in that order. */
    private final TreeMap<String, TrackedMachine> known = new TreeMap<>();
    private final BitSet handles = new BitSet();
    private HeldAddresses knownHeld = HeldAddresses.EMPTY;
    /** This registry's own, edited in place ({@link GuestIndex#editInPlace}): never the shared empty one. */
    private GuestIndex knownIndex = new GuestIndex.Builder().build();
    /** The guest addresses the index is to lose (of machines gone or changed) and then gain, in this update. */
    private final List<TrackedMachine> unindex = new ArrayList<>();
    private final List<TrackedMachine> reindex = new ArrayList<>();

    /**
     * An empty registry.
     *
     * @param refusals where a newly pending machine is logged.
     * @param nanoTime the clock deletions are due by.
     */
    MachineRegistry(final RefusalLog refusals, final LongSupplier nanoTime)
    {
        this.refusals = refusals;
        this.nanoTime = nanoTime;
    }

    /**
     * The egress addresses held by the machines themselves: their pairs and machine-scoped pairs (not a released
     * pair still draining, which only the control loop knows of).
     *
     * @param machines every machine.
     * @param held4    receives the IPv4 addresses.
     * @param held6    receives the IPv6 addresses.
     */
    static void heldBy(final List<EgressAllocator.MachineView> machines, final List<Ipv4Address> held4,
        final List<Ipv6Address> held6)
    {
        for (final EgressAllocator.MachineView view : machines)
        {
            for (final EgressPair pair : new EgressPair[] {view.egress().pair(), view.machineScopedPair()})
            {
                if (pair != null)
                {
                    held4.add(pair.ipv4());
                    held6.add(pair.ipv6());
                }
            }
        }
    }

    /**
     * Takes the machines as the allocator now has them and returns what changed (see the class comment).
     *
     * @param machines   every machine.
     * @param held4      every IPv4 egress address egressd holds: app pairs, machine-scoped pairs, still draining.
     * @param held6      the same for IPv6.
     * @param drainNanos the drain time for flows of a changed egress address.
     * @return the update, or null when nothing changed.
     */
    synchronized Update diff(final List<EgressAllocator.MachineView> machines, final Collection<Ipv4Address> held4,
        final Collection<Ipv6Address> held6, final long drainNanos)
    {
        final Set<String> ids = new HashSet<>(machines.size() * 2);
        for (final EgressAllocator.MachineView view : machines)
        {
            ids.add(view.machine().id());
        }
        final List<String> gone = new ArrayList<>();
        for (final String id : known.keySet())
        {
            if (!ids.contains(id))
            {
                gone.add(id);
            }
        }
        return changed(machines, gone, held4, held6, drainNanos);
    }

    /**
     * As {@link #diff}, told only what may have changed since the last call: the machines that may differ (any
     * other is as the registry last heard of it) and the ids of machines that may be gone. The same update as
     * {@link #diff} with every machine, for O(what changed) work (the guest index too: edited in place).
     *
     * @param changed    machines that may have changed or be new, in id order.
     * @param gone       ids of machines that may be gone (an id also in {@code changed} is not), in id order.
     * @param held4      every IPv4 egress address egressd holds: app pairs, machine-scoped pairs, still draining.
     * @param held6      the same for IPv6.
     * @param drainNanos the drain time for flows of a changed egress address.
     * @return the update, or null when nothing changed.
     */
    synchronized Update changed(final List<EgressAllocator.MachineView> changed, final Collection<String> gone,
        final Collection<Ipv4Address> held4, final Collection<Ipv6Address> held6, final long drainNanos)
    {
        final HeldAddresses heldNow = HeldAddresses.of(held4, held6);
        final boolean heldChanged = !heldNow.equals(knownHeld);
        knownHeld = heldNow;
        final List<TrackedMachine> registers = new ArrayList<>();
        final List<TrackedMachine> unregisters = new ArrayList<>();
        final List<FlowDeletion> deletes = new ArrayList<>();
        final Set<String> seen = new HashSet<>(changed.size() * 2);
        final long now = nanoTime.getAsLong();
        for (final EgressAllocator.MachineView view : changed)
        {
            final TrackedMachine was = known.get(view.machine().id());
            final TrackedMachine is = tracked(view, was != null ? was.handle() : handles.nextClearBit(0));
            handles.set(is.handle());
            seen.add(is.id());
            if (was == null || !sameRegistration(was, is))
            {
                registers.add(is);
            }
            if (was == null || !Objects.equals(was.guest4(), is.guest4()) || !Objects.equals(was.guest6(), is.guest6()))
            {
                if (was != null)
                {
                    unindex.add(was);
                }
                reindex.add(is);
            }
            known.put(is.id(), is);
            if (is.scope() == Scope.PENDING && (was == null || was.scope() != Scope.PENDING))
            {
                refusals.refusal("pending", is.id(), is.app(), null, 1, view.egress().reason());
            }
            if (was == null)
            {
                firstSeen(is, now, deletes);
            }
            else
            {
                changed(was, is, now, drainNanos, deletes);
            }
        }
        // handles of machines gone are free only after the new ones got theirs, as the whole diff always did
        final List<TrackedMachine> removed = new ArrayList<>();
        for (final String id : gone)
        {
            if (!seen.contains(id))
            {
                final TrackedMachine was = known.remove(id);
                if (was != null)
                {
                    removed.add(was);
                }
            }
        }
        for (final TrackedMachine was : removed)
        {
            unregisters.add(was);
            handles.clear(was.handle());
            unindex.add(was);
            deletes.add(new FlowDeletion(now, was.id(), was.guest4(), was.guest6(), null, null,
                FlowDeletion.Kind.ALL_OR_VIA, "machine deleted"));
        }
        if (!unindex.isEmpty() || !reindex.isEmpty())
        {
            // only a new machine, a removed one or a guest address changed changes the index (a known machine
            // keeps its handle): the last index edited in place with those, every removal first (an address may
            // pass from one machine to another in one update). In place, not a copy: the registry runs on the
            // monitor thread, the index's only reader, which takes this update's index in the same turn.
            final GuestIndex.Editor e = knownIndex.editInPlace();
            for (final TrackedMachine t : unindex)
            {
                if (t.guest4() != null)
                {
                    e.remove4(t.guest4().bits(), t.handle());
                }
                if (t.guest6() != null)
                {
                    e.remove6(t.guest6().high(), t.guest6().low(), t.handle());
                }
            }
            for (final TrackedMachine t : reindex)
            {
                if (t.guest4() != null)
                {
                    e.put4(t.guest4().bits(), t.handle());
                }
                if (t.guest6() != null)
                {
                    e.put6(t.guest6().high(), t.guest6().low(), t.handle());
                }
            }
            knownIndex = e.build();
            unindex.clear();
            reindex.clear();
        }
        if (registers.isEmpty() && unregisters.isEmpty() && deletes.isEmpty() && !heldChanged)
        {
            return null;
        }
        return new Update(knownIndex, heldNow, registers, unregisters, deletes);
    }

    private static TrackedMachine tracked(final EgressAllocator.MachineView view, final int handle)
    {
        final Egress e = view.egress();
        final boolean ranged = e.firstPort() > 0;
        return new TrackedMachine(view.machine().id(), view.machine().app(), handle, view.machine().ipv4(),
            view.machine().ipv6(), e.scope(), e.pair() == null ? null : e.pair().ipv4(),
            e.pair() == null ? null : e.pair().ipv6(), ranged ? e.firstPort() : ANY_FIRST,
            ranged ? e.lastPort() : ANY_LAST);
    }

    private static boolean sameRegistration(final TrackedMachine was, final TrackedMachine is)
    {
        return was.firstPort() == is.firstPort() && was.lastPort() == is.lastPort()
            && Objects.equals(was.guest4(), is.guest4()) && Objects.equals(was.guest6(), is.guest6())
            && Objects.equals(was.egress4(), is.egress4()) && Objects.equals(was.egress6(), is.egress6())
            && was.scope() == is.scope();
    }

    /** First seen while static: flows it masqueraded before a move nobody told the monitor of go at once. */
    private static void firstSeen(final TrackedMachine is, final long now, final List<FlowDeletion> deletes)
    {
        if (TrackedMachine.isStatic(is.scope()) && is.hasGuest())
        {
            deletes.add(new FlowDeletion(now, is.id(), is.guest4(), is.guest6(), null, null,
                FlowDeletion.Kind.UNHELD, "first seen " + is.scope().wireName() + " via " + is.egress4()
                + ": flows translated to no held egress address"));
        }
    }

    private static void changed(final TrackedMachine was, final TrackedMachine is, final long now,
        final long drainNanos, final List<FlowDeletion> deletes)
    {
        // a guest address given up: its flows are no longer this machine's
        final Ipv4Address oldGuest4 = Objects.equals(was.guest4(), is.guest4()) ? null : was.guest4();
        final Ipv6Address oldGuest6 = Objects.equals(was.guest6(), is.guest6()) ? null : was.guest6();
        if (oldGuest4 != null || oldGuest6 != null)
        {
            deletes.add(new FlowDeletion(now, was.id(), oldGuest4, oldGuest6, null, null,
                FlowDeletion.Kind.ALL_OR_VIA, "guest address changed"));
        }
        // the egress address changed (not on promotion, which keeps it): old flows go after the drain time
        final Ipv4Address oldEgress4 = was.egress4() != null && !was.egress4().equals(is.egress4())
            && Objects.equals(was.guest4(), is.guest4()) ? was.egress4() : null;
        final Ipv6Address oldEgress6 = was.egress6() != null && !was.egress6().equals(is.egress6())
            && Objects.equals(was.guest6(), is.guest6()) ? was.egress6() : null;
        if ((oldEgress4 != null && was.guest4() != null) || (oldEgress6 != null && was.guest6() != null))
        {
            deletes.add(new FlowDeletion(now + drainNanos, was.id(), oldEgress4 == null ? null : was.guest4(),
                oldEgress6 == null ? null : was.guest6(), oldEgress4, oldEgress6, FlowDeletion.Kind.ALL_OR_VIA,
                "egress changed from " + was.egress4() + " to " + is.egress4()));
        }
        // it became static: what it has masqueraded so far left from the host's address, and goes at once. Only
        // that: flows via a pair it left before going host (X released, then a slot of A within X's drain) leave
        // from an address egressd still holds, and X's drain deletion, scheduled when it left X, takes them.
        if (!TrackedMachine.isStatic(was.scope()) && TrackedMachine.isStatic(is.scope()) && is.hasGuest())
        {
            deletes.add(new FlowDeletion(now, was.id(), is.guest4(), is.guest6(), null, null,
                FlowDeletion.Kind.UNHELD, "became static (" + was.scope().wireName() + " to "
                + is.scope().wireName() + " via " + is.egress4() + "): flows translated to no held egress address"));
        }
    }
}
