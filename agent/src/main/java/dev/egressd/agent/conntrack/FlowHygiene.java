package dev.egressd.agent.conntrack;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvents;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.function.Function;
import java.util.function.LongSupplier;

/**
 * Deletes conntrack flows that must not live on (a kernel writer): a deleted machine's flows, a given-up guest
 * address's, the flows still translated to an egress address the machine left once the drain time
 * ({@code conntrack-drain-seconds}) has passed, and the masqueraded flows of a machine that became static or is
 * first seen static (docs/design.md, invariant 3). Deleting a live flow resets it (docs/design.md, pitfall 10):
 * intended for each of these.
 *
 * <p>Runs on the monitor thread only: ctnetlink's request socket belongs to one thread, and events wait in the
 * subscription's large buffer meanwhile. Every deletion due at one turn shares one dump; the entries are copied and
 * deleted after it. A failed dump or delete puts every deletion of that turn back, due a second later: flows the
 * kernel may still hold are never forgotten, and deleting again what is already gone is harmless.
 */
final class FlowHygiene
{
    private static final Logger LOG = LoggerFactory.getLogger(FlowHygiene.class);
    /** After a failed dump or delete, how long before the same deletions are tried again. */
    private static final long RETRY_NANOS = 1_000_000_000L;

    /**
     * The kernel's conntrack table as hygiene uses it: a dump, and a delete of one entry. A seam, so the unit tests
     * can see what hygiene deletes without a kernel.
     */
    interface FlowTable
    {
        /**
         * Dumps every entry.
         *
         * @param listener receives each entry (reused after the call).
         * @throws IOException if the dump fails.
         */
        void dump(ConntrackEvents.Listener listener) throws IOException;

        /**
         * Deletes one entry.
         *
         * @param entry the entry, as dumped.
         * @return false when it was already gone.
         * @throws IOException if the kernel refuses.
         */
        boolean delete(ConntrackEvent entry) throws IOException;

        /**
         * The table behind a conntrack socket.
         *
         * @param events the socket.
         * @return the table.
         */
        static FlowTable of(final ConntrackEvents events)
        {
            return new FlowTable()
            {
                @Override
                public void dump(final ConntrackEvents.Listener listener) throws IOException
                {
                    events.dump(listener);
                }

                @Override
                public boolean delete(final ConntrackEvent entry) throws IOException
                {
                    return events.delete(entry);
                }
            };
        }
    }

    private final FlowTable flows;
    private final LongSupplier nanoTime;
    private final List<FlowDeletion> pending = new ArrayList<>();
    private HeldAddresses held = HeldAddresses.EMPTY;
    private long flowsDeleted;
    private long failures;

    /**
     * Hygiene over a table.
     *
     * @param flows    the table, or null to delete nothing (a monitor without a kernel).
     * @param nanoTime the clock deletions are due by.
     */
    FlowHygiene(final FlowTable flows, final LongSupplier nanoTime)
    {
        this.flows = flows;
        this.nanoTime = nanoTime;
    }

    /**
     * Queues deletions and sets the egress addresses egressd holds, as one machine update brings them.
     *
     * @param deletions the deletions, each with its due time.
     * @param heldNow   the addresses held now: a {@link FlowDeletion.Kind#UNHELD} deletion keeps flows via these.
     */
    void schedule(final Collection<FlowDeletion> deletions, final HeldAddresses heldNow)
    {
        held = heldNow;
        pending.addAll(deletions);
    }

    /**
     * Runs every deletion that is due and still wanted, with one dump for all of them.
     *
     * @param machines the machines as the ledger feed knows them now, by id (null for a deleted one).
     * @return true if the table was touched (or tried), so the figures should be published.
     */
    boolean runDue(final Function<String, TrackedMachine> machines)
    {
        if (pending.isEmpty())
        {
            return false;
        }
        final long now = nanoTime.getAsLong();
        final List<FlowDeletion> due = new ArrayList<>();
        for (final Iterator<FlowDeletion> it = pending.iterator(); it.hasNext(); )
        {
            final FlowDeletion d = it.next();
            if (now - d.due() < 0)
            {
                continue;
            }
            it.remove();
            if (d.stillWanted(machines.apply(d.machine())))
            {
                due.add(d);
            }
        }
        if (due.isEmpty() || flows == null)
        {
            return false;
        }
        final int[] perDeletion = new int[due.size()];
        try
        {
            final Victims victims = new Victims(due, machines);
            flows.dump(victims);
            for (int v = 0; v < victims.entries.size(); v++)
            {
                if (flows.delete(victims.entries.get(v)))
                {
                    perDeletion[victims.owners.get(v)]++;
                }
            }
        }
        catch (final IOException e)
        {
            failures++;
            final long retry = nanoTime.getAsLong() + RETRY_NANOS;
            due.forEach(d -> pending.add(d.retryAt(retry)));
            LOG.error("conntrack: deleting the flows of machines {} failed, retrying in 1 s: {}",
                due.stream().map(FlowDeletion::machine).distinct().toList(), e.getMessage());
            for (final int deleted : perDeletion)
            {
                flowsDeleted += deleted;
            }
            return true;
        }
        int none = 0;
        for (int i = 0; i < due.size(); i++)
        {
            final FlowDeletion d = due.get(i);
            flowsDeleted += perDeletion[i];
            if (perDeletion[i] == 0)
            {
                // at start every static machine is "first seen": thousands of lines saying nothing was deleted
                // would cost the start-up its CPU and the journal megabytes (docs/operations.md, "Start-up")
                none++;
                LOG.debug("conntrack: deleted 0 flows of machine {} ({})", d.machine(), d.why());
                continue;
            }
            LOG.info("conntrack: deleted {} flows of machine {} ({}; guest {} {}{})", perDeletion[i], d.machine(),
                d.why(), d.guest4(), d.guest6(), d.scopeText(held));
        }
        if (none > 0)
        {
            LOG.info("conntrack: checked the flows of {} machines: none to delete", none);
        }
        return true;
    }

    /**
     * Conntrack entries deleted so far.
     *
     * @return the count.
     */
    long flowsDeleted()
    {
        return flowsDeleted;
    }

    /**
     * Dumps or deletes that failed (each retried a second later).
     *
     * @return the count.
     */
    long failures()
    {
        return failures;
    }

    /**
     * Deletions queued and not yet run (due later, or waiting for a retry).
     *
     * @return the count.
     */
    int pending()
    {
        return pending.size();
    }

    /** Collects, during one dump, the entries to delete and which deletion each belongs to. */
    private final class Victims implements ConntrackEvents.Listener
    {
        final List<ConntrackEvent> entries = new ArrayList<>();
        final List<Integer> owners = new ArrayList<>();
        private final List<FlowDeletion> due;
        private final Function<String, TrackedMachine> machines;

        Victims(final List<FlowDeletion> due, final Function<String, TrackedMachine> machines)
        {
            this.due = due;
            this.machines = machines;
        }

        @Override
        public void onEvent(final ConntrackEvent e)
        {
            for (int i = 0; i < due.size(); i++)
            {
                final FlowDeletion d = due.get(i);
                final TrackedMachine current = d.kind() != FlowDeletion.Kind.ALL_OR_VIA
                    ? machines.apply(d.machine()) : null;
                if (d.matches(e, current == null ? null : current.egress4(),
                    current == null ? null : current.egress6(), held))
                {
                    entries.add(e.copy()); // the dump reuses its event
                    owners.add(i);
                    return;
                }
            }
        }

        @Override
        public void onOverrun()
        {
            // a request socket joins no group: never called
        }
    }
}
