package dev.egressd.agent.conntrack;

import dev.egressd.agent.refusals.RefusalLog;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvents;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.ledger.ConnectionLedger;
import dev.egressd.core.ledger.DestinationLedger;
import dev.egressd.core.ledger.DestinationUsage;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Scope;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.Collection;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.function.LongSupplier;

/**
 * Conntrack, live (issue 5 §1): one dedicated thread reads ctnetlink NEW, UPDATE and DESTROY events and feeds the
 * nat-core {@link DestinationLedger} with the flows whose original source is a guest address.
 *
 * <h2>Threading: the monitor thread owns the ledger</h2>
 * The ledger, the guest index, the per-machine names and every counter are touched by the monitor thread only,
 * so none needs a lock (STYLE guidance 3, single writer). Everyone else talks to it through one queue that the
 * thread drains between two polls (at most the poll timeout, {@value #POLL_MILLIS} ms, apart):
 * <ul>
 *     <li>the control loop calls {@link #machinesChanged} after each committed mutation: the diff against the
 *     previous machines is computed on the caller's thread and queued as one update (new guest index, register,
 *     re-register, unregister, flows to delete now or after the drain time);</li>
 *     <li>the API asks {@link #connections} and {@link #query}: the work runs on the monitor thread, and a
 *     {@link CompletableFuture} carries the answer back (or an error, once the monitor has stopped: a query is
 *     never left unanswered);</li>
 *     <li>metrics and the machine view read {@link #stats()}, an immutable snapshot the thread publishes every
 *     second (and after every update or resync): never a torn or racy read of the ledger.</li>
 * </ul>
 * Deleting flows (hygiene) dumps the table and deletes entry by entry on the monitor thread too: ctnetlink's request
 * socket belongs to one thread, and events wait in the socket's large buffer meanwhile. Every deletion due at one
 * turn shares one dump.
 *
 * <h2>A machine that became static, or a static machine first seen: its wrongly translated flows go (DESIGN.md
 * invariant 3)</h2>
 * A machine that moves from host or pending to a static scope (an app slot or a machine-scoped pair) while the
 * monitor runs loses its masqueraded flows at once (see {@link #machinesChanged}). But the monitor may never see the
 * move: egressd may restart between committing it and telling the monitor, or be down when it happened; on start
 * every machine is new to the monitor. So whenever the monitor first learns of a machine of static scope (the
 * machines it is told before it starts, whose deletion runs before the start dump, and any machine registered fresh
 * later) it applies the same rule as to a machine it saw become static: it deletes at once that machine's
 * source-translated flows whose translated source address is not one of the egress addresses egressd holds: every
 * app pair and machine-scoped pair, both families, plus addresses still draining (the set given to
 * {@link #machinesChanged(List, Collection, Collection, long)}, as it stands when the deletion runs). Such a flow was
 * masqueraded (it leaves from the host's address) or otherwise wrongly translated. A flow translated to any held
 * address is kept: it may be draining from a pair the machine left (after a restart, or when the machine went from
 * pair X to host and then to pair A within X's drain: X's drain deletion removes those when X's drain time ends), or
 * be a right one; a flow not translated at all (to the host itself) is kept; a machine of host or pending scope keeps
 * every flow. The rule costs one dump at start (shared with every other deletion due) and one per batch of fresh or
 * newly static machines later.
 *
 * <h2>What is counted</h2>
 * NEW and dumped entries with {@code IPS_SRC_NAT} (they left through the uplink, translated) from a guest address
 * are opened in the ledger under the destination IP with the reply tuple's destination port (the translated source
 * port). DESTROY closes. A TCP UPDATE to TIME_WAIT or CLOSE closes too, because {@code ct count} stops counting such
 * entries (nft-recipe pitfall 8): without it a guest that churns short connections would look saturated for the 120 s
 * of TIME_WAIT; the later DESTROY is then a harmless unknown close. UPDATE costs about three more events per TCP
 * connection (SYN_RECV, ESTABLISHED, FIN_WAIT... TIME_WAIT); see benchmarks/README.md "Conntrack ingestion".
 *
 * <h2>Overruns</h2>
 * ENOBUFS means the kernel dropped events: the thread resynchronises the ledger from a full dump
 * ({@code beginResync}, dump, {@code endResync}) and counts it. The same happens once at start. Not at once: the
 * socket still holds the events queued before the drop, and a NEW among them whose DESTROY was dropped would, read
 * after the dump, open a connection that no longer exists and that nothing would ever close. So the thread first
 * keeps reading (in order, as usual) until the socket is empty (a poll times out) or for at most 0.5 s, which
 * consumes everything queued before the drop, and only then dumps (measured in the privileged overrun test).
 *
 * <p>The event path (parse, index lookup, ledger) allocates nothing; only crossing a limit (a log line) does.
 */
public final class ConntrackMonitor implements AutoCloseable, ConntrackStats
{
    /** How long one poll waits for events, so queued work is picked up at least this often. */
    public static final int POLL_MILLIS = 100;

    private static final Logger LOG = LoggerFactory.getLogger(ConntrackMonitor.class);
    private static final long SECOND = 1_000_000_000L;
    /** After an overrun, how long queued events are still read before the resync dump (see the class comment). */
    private static final long DRAIN_BEFORE_RESYNC_NANOS = 500_000_000L;
    /** After a failed dump or delete, how long before the same deletions are tried again. */
    private static final long RETRY_DELETIONS_NANOS = SECOND;
    private static final int TCP = 6;
    private static final int ANY_FIRST = 1;
    private static final int ANY_LAST = 65535;
    private static final int REACHED_ANY = ConnectionLedger.REACHED_WARNING | ConnectionLedger.REACHED_CRITICAL
        | ConnectionLedger.REACHED_OVER_CAP;

    /** A machine as the monitor knows it. */
    record Tracked(String id, String app, int handle, Ipv4Address guest4, Ipv6Address guest6, Scope scope,
        Ipv4Address egress4, Ipv6Address egress6, int firstPort, int lastPort)
    {
    }

    /** Which of a guest's flows a {@link Deletion} takes. */
    private enum Kind
    {
        /** Every flow of the guest addresses (no egress), or the ones translated to the given egress. */
        ALL_OR_VIA,
        /**
         * Source-translated flows translated to none of the egress addresses egressd holds when the deletion runs
         * (nor to the machine's egress then): a machine that became static (host or pending to a static scope), or a
         * static machine first seen (at start, or registered fresh: a move the monitor never saw), loses the flows it
         * masqueraded, which left from the host's address. Flows translated to a held address are kept: its new
         * pair's, and those of a pair it left that is still draining (DESIGN.md invariant 3 allows a static address
         * the operator allowlisted; that pair's own drain deletion removes them when its drain time ends).
         */
        UNHELD
    }

    /**
     * Flows of a guest to delete from conntrack, at a time. Three cases:
     * <ul>
     *     <li>{@link Kind#ALL_OR_VIA}, no egress: every flow of the guest addresses (machine deleted, guest address
     *     given up);</li>
     *     <li>{@link Kind#ALL_OR_VIA}, an egress: the guest's flows translated to that address (an egress given up,
     *     after the drain time);</li>
     *     <li>{@link Kind#UNHELD}: a machine that became static, or a static machine first seen, see there.</li>
     * </ul>
     */
    private record Deletion(long due, String machine, Ipv4Address guest4, Ipv6Address guest6, Ipv4Address egress4,
        Ipv6Address egress6, Kind kind, String why)
    {
        /**
         * The same deletion, due again later (after a failed attempt).
         *
         * @param later when.
         * @return the copy.
         */
        Deletion retryAt(final long later)
        {
            return new Deletion(later, machine, guest4, guest6, egress4, egress6, kind, why);
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

    /**
     * The egress addresses egressd holds (app pairs, machine-scoped pairs, addresses still draining), as sorted
     * arrays: membership tests allocate nothing.
     */
    static final class HeldAddresses
    {
        static final HeldAddresses EMPTY = new HeldAddresses(new int[0], new long[0]);

        private final int[] v4;
        /** IPv6 addresses as (high, low) pairs, sorted. */
        private final long[] v6;

        private HeldAddresses(final int[] v4, final long[] v6)
        {
            this.v4 = v4;
            this.v6 = v6;
        }

        static HeldAddresses of(final Collection<Ipv4Address> ipv4, final Collection<Ipv6Address> ipv6)
        {
            final int[] a = ipv4.stream().filter(Objects::nonNull).mapToInt(Ipv4Address::bits).distinct().sorted()
                .toArray();
            final List<Ipv6Address> b = ipv6.stream().filter(Objects::nonNull).distinct()
                .sorted(Comparator.comparingLong(Ipv6Address::high).thenComparingLong(Ipv6Address::low)).toList();
            final long[] c = new long[b.size() * 2];
            for (int i = 0; i < b.size(); i++)
            {
                c[2 * i] = b.get(i).high();
                c[2 * i + 1] = b.get(i).low();
            }
            return new HeldAddresses(a, c);
        }

        boolean contains4(final int bits)
        {
            return Arrays.binarySearch(v4, bits) >= 0;
        }

        boolean contains6(final long high, final long low)
        {
            for (int i = 0; i < v6.length; i += 2)
            {
                if (v6[i] == high && v6[i + 1] == low)
                {
                    return true;
                }
            }
            return false;
        }

        @Override
        public boolean equals(final Object o)
        {
            return o instanceof HeldAddresses h && Arrays.equals(v4, h.v4) && Arrays.equals(v6, h.v6);
        }

        @Override
        public int hashCode()
        {
            return 31 * Arrays.hashCode(v4) + Arrays.hashCode(v6);
        }

        @Override
        public String toString()
        {
            final List<String> all = new ArrayList<>();
            for (final int a : v4)
            {
                all.add(new Ipv4Address(a).toString());
            }
            for (int i = 0; i < v6.length; i += 2)
            {
                all.add(new Ipv6Address(v6[i], v6[i + 1]).toString());
            }
            return all.toString();
        }
    }

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
    }

    /** A read of the ledger queued for the monitor thread; failed, not lost, when the monitor stops. */
    private static final class Query<T> implements Runnable
    {
        private final CompletableFuture<T> future = new CompletableFuture<>();
        private final Function<ConnectionLedger, T> read;
        private final ConnectionLedger ledger;

        Query(final Function<ConnectionLedger, T> read, final ConnectionLedger ledger)
        {
            this.read = read;
            this.ledger = ledger;
        }

        @Override
        public void run()
        {
            try
            {
                future.complete(read.apply(ledger));
            }
            catch (final RuntimeException e)
            {
                future.completeExceptionally(e);
            }
        }

        void fail()
        {
            future.completeExceptionally(new IllegalStateException("the conntrack monitor is stopped"));
        }
    }

    /**
     * One machine's connections as {@code GET /v1/machines/{id}/connections} shows them.
     *
     * @param machine      the machine id.
     * @param cap          the destination cap.
     * @param total        live connections of the machine.
     * @param busiest      the busiest destination, or null when none.
     * @param destinations the busiest destinations, count descending.
     * @param violations   connections of this machine whose translated port lay outside its block.
     */
    public record Connections(String machine, int cap, int total, DestinationUsage busiest,
        List<DestinationUsage> destinations, long violations)
    {
    }

    /**
     * One machine's summary for the machine view and metrics.
     *
     * @param total   live connections.
     * @param busiest the busiest destination's connections.
     */
    public record MachineSummary(int total, int busiest)
    {
    }

    /**
     * What the monitor has seen, published by its thread at least every second.
     *
     * @param cap                the destination cap.
     * @param newEvents          NEW events read.
     * @param updateEvents       UPDATE events read.
     * @param destroyEvents      DESTROY events read.
     * @param existingEvents     entries read by dumps (at start and at every resync).
     * @param guestEvents        events of guest flows (the ones that fed the ledger).
     * @param overruns           times the kernel dropped events (ENOBUFS).
     * @param resyncs            full dumps into the ledger, the one at start included.
     * @param errors             socket errors.
     * @param flowsDeleted       conntrack entries deleted by hygiene.
     * @param liveConnections    live guest connections in the ledger.
     * @param machinesAtWarning  machines whose busiest destination is at >= 80% of the cap.
     * @param machinesAtCritical machines at >= 95%.
     * @param machinesOverCap    machines over the cap.
     * @param violations         connections whose translated port lay outside the machine's block.
     * @param machines           per machine id.
     */
    public record Stats(int cap, long newEvents, long updateEvents, long destroyEvents, long existingEvents,
        long guestEvents,
        long overruns, long resyncs, long errors, long flowsDeleted, int liveConnections, int machinesAtWarning,
        int machinesAtCritical, int machinesOverCap, long violations, Map<String, MachineSummary> machines)
    {
        /**
         * The busiest destination's use of the cap for a machine.
         *
         * @param id the machine id.
         * @return 0..1 (more when over the cap), 0 when unknown.
         */
        public double busiestUse(final String id)
        {
            final MachineSummary s = machines.get(id);
            return s == null ? 0 : use(s.busiest(), cap);
        }
    }

    private final ConntrackEvents events;
    private final FlowTable flows;
    private final ConnectionLedger ledger;
    private final RefusalLog refusals;
    private final LongSupplier nanoTime;
    private final LinkedBlockingQueue<Runnable> commands = new LinkedBlockingQueue<>();
    private final ConntrackEvents.Listener listener = new ConntrackEvents.Listener()
    {
        @Override
        public void onEvent(final ConntrackEvent event)
        {
            ConntrackMonitor.this.onEvent(event);
        }

        @Override
        public void onOverrun()
        {
            overruns++;
            overranThisPoll = true;
            if (!draining)
            {
                draining = true;
                drainDeadline = nanoTime.getAsLong() + DRAIN_BEFORE_RESYNC_NANOS;
            }
        }
    };
    private Thread thread;
    private volatile boolean running;
    /** Set by {@link #close()}, or when the thread has ended: queries are refused from then on. */
    private volatile boolean stopped;
    private volatile Stats stats;

    // control-loop side (machinesChanged is synchronized)
    private final Map<String, Tracked> known = new HashMap<>();
    private final BitSet handles = new BitSet();
    private HeldAddresses knownHeld = HeldAddresses.EMPTY;

    // monitor thread only
    private GuestIndex index = GuestIndex.EMPTY;
    private Tracked[] byHandle = new Tracked[16];
    private long[] violationsByHandle = new long[16];
    private final Map<String, Tracked> byId = new HashMap<>();
    private final List<Deletion> deletions = new ArrayList<>();
    private HeldAddresses held = HeldAddresses.EMPTY;
    private boolean resyncNeeded;
    private boolean draining;
    private boolean overranThisPoll;
    private long drainDeadline;
    private boolean publishNeeded = true;
    private long publishedAt;
    private long newEvents;
    private long existingEvents;
    private long updateEvents;
    private long destroyEvents;
    private long guestEvents;
    private long overruns;
    private long resyncs;
    private long errors;
    private long flowsDeleted;

    /**
     * A monitor over a conntrack subscription (opened in the namespace to watch; the monitor closes it).
     *
     * @param events         the subscription (NEW, UPDATE, DESTROY), or null for a monitor without a kernel
     *                       (dry run, tests): the ledger then stays empty but the API answers.
     * @param destinationCap the destination cap.
     * @param refusals       where violations and limits crossed are logged.
     * @param nanoTime       the clock (drain times, publishing).
     */
    public ConntrackMonitor(final ConntrackEvents events, final int destinationCap, final RefusalLog refusals,
        final LongSupplier nanoTime)
    {
        this(events, events == null ? null : new FlowTable()
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
        }, destinationCap, refusals, nanoTime);
    }

    /**
     * A monitor whose hygiene deletes through the given table; for tests (with {@code events} null, the monitor
     * reads no events but still deletes).
     *
     * @param events         the subscription, or null.
     * @param flows          the table hygiene dumps and deletes from, or null to delete nothing.
     * @param destinationCap the destination cap.
     * @param refusals       where violations and limits crossed are logged.
     * @param nanoTime       the clock.
     */
    ConntrackMonitor(final ConntrackEvents events, final FlowTable flows, final int destinationCap,
        final RefusalLog refusals, final LongSupplier nanoTime)
    {
        this.events = events;
        this.flows = flows;
        this.ledger = new DestinationLedger(destinationCap, 4096, 64);
        this.refusals = refusals;
        this.nanoTime = nanoTime;
        this.stats = snapshot();
    }

    /**
     * The refusal log this monitor writes to (shared with the control loop).
     *
     * @return the log.
     */
    public RefusalLog refusals()
    {
        return refusals;
    }

    /**
     * Starts the monitor thread: it applies queued machine updates, dumps the table once, then follows events.
     *
     * @return this.
     */
    public synchronized ConntrackMonitor start()
    {
        if (thread != null)
        {
            throw new IllegalStateException("already started");
        }
        running = true;
        thread = new Thread(this::run, "egressd-conntrack");
        thread.setDaemon(true);
        thread.start();
        return this;
    }

    /**
     * The last published snapshot.
     *
     * @return the stats, at most about a second old.
     */
    public Stats stats()
    {
        return stats;
    }

    // ConntrackStats: the metrics read the published snapshot, never the ledger the monitor thread writes.

    @Override
    public int destinationCap()
    {
        return stats.cap();
    }

    @Override
    public int busiestCount(final String machine)
    {
        final MachineSummary summary = stats.machines().get(machine);
        return summary == null ? 0 : summary.busiest();
    }

    @Override
    public int machinesAtWarning()
    {
        return stats.machinesAtWarning();
    }

    @Override
    public int machinesAtCritical()
    {
        return stats.machinesAtCritical();
    }

    @Override
    public int liveConnections()
    {
        return stats.liveConnections();
    }

    @Override
    public long violations()
    {
        return stats.violations();
    }

    @Override
    public long events(final ConntrackEvent.Type type)
    {
        final Stats s = stats;
        return switch (type)
        {
            case NEW -> s.newEvents();
            case UPDATE -> s.updateEvents();
            case DESTROY -> s.destroyEvents();
            case EXISTING -> s.existingEvents();
        };
    }

    @Override
    public long resyncs()
    {
        // Stats counts the dump at start too; the metric counts only the dumps that repaired lost events.
        return Math.max(0, stats.resyncs() - 1);
    }

    // ------------------------------------------------------------------------------ control loop side

    /**
     * Tells the monitor the machines as the allocator now has them (after every committed change). Computes the
     * difference on the calling thread and queues it: new machines are registered; changed port ranges
     * re-registered (live connections kept, as the kernel keeps their translation); deleted machines unregistered
     * and their conntrack flows deleted at once (each live TCP flow is reset: intended); a changed egress address
     * deletes the flows still translated to the old address after the drain time (the old address stays on the
     * uplink that long); promotion keeps the address and therefore every flow. A machine that becomes static (from
     * host or pending to an app slot or a machine-scoped pair) has its flows translated to no egress address egressd
     * holds deleted at once, without a drain: those are its masqueraded flows, which leave from the host's address,
     * which a static machine must never use (DESIGN.md invariant 3). Its flows through its new pair, through a pair it
     * left that is still draining (they leave from a static address; that pair's own drain deletion, scheduled when
     * the machine left it, removes them when the drain time ends), and flows not translated at all, are kept. A
     * machine newly pending is logged as a refusal.
     *
     * <p>The egress addresses egressd holds are taken to be the machines' own pairs and machine-scoped pairs, so a
     * released pair still draining is not among them here; the control loop, which also knows pairs no machine uses
     * now and addresses still draining, calls {@link #machinesChanged(List, Collection, Collection, long)}.
     *
     * @param machines   every machine.
     * @param drainNanos the drain time for flows of a changed egress address.
     */
    public void machinesChanged(final List<EgressAllocator.MachineView> machines, final long drainNanos)
    {
        final List<Ipv4Address> held4 = new ArrayList<>();
        final List<Ipv6Address> held6 = new ArrayList<>();
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
        machinesChanged(machines, held4, held6, drainNanos);
    }

    /**
     * As {@link #machinesChanged(List, long)}, with the egress addresses egressd holds: a machine that becomes
     * static, and a machine of static scope that the monitor learns of for the first time (every machine of the first
     * call, and any machine new to it later), has its source-translated flows to any other address deleted at once
     * (see the class comment).
     *
     * @param machines   every machine.
     * @param held4      every IPv4 egress address egressd holds: app pairs, machine-scoped pairs, still draining.
     * @param held6      the same for IPv6.
     * @param drainNanos the drain time for flows of a changed egress address.
     */
    public synchronized void machinesChanged(final List<EgressAllocator.MachineView> machines,
        final Collection<Ipv4Address> held4, final Collection<Ipv6Address> held6, final long drainNanos)
    {
        final HeldAddresses heldNow = HeldAddresses.of(held4, held6);
        final boolean heldChanged = !heldNow.equals(knownHeld);
        knownHeld = heldNow;
        final Map<String, Tracked> next = new LinkedHashMap<>();
        final List<Tracked> registers = new ArrayList<>();
        final List<Tracked> unregisters = new ArrayList<>();
        final List<Deletion> deletes = new ArrayList<>();
        final long now = nanoTime.getAsLong();
        for (final EgressAllocator.MachineView view : machines)
        {
            final Tracked was = known.get(view.machine().id());
            final int handle = was != null ? was.handle() : handles.nextClearBit(0);
            handles.set(handle);
            final Egress e = view.egress();
            final boolean ranged = e.firstPort() > 0;
            final Tracked now1 = new Tracked(view.machine().id(), view.machine().app(), handle, view.machine().ipv4(),
                view.machine().ipv6(), e.scope(), e.pair() == null ? null : e.pair().ipv4(),
                e.pair() == null ? null : e.pair().ipv6(), ranged ? e.firstPort() : ANY_FIRST,
                ranged ? e.lastPort() : ANY_LAST);
            next.put(now1.id(), now1);
            if (was == null || was.firstPort() != now1.firstPort() || was.lastPort() != now1.lastPort()
                || !Objects.equals(was.guest4(), now1.guest4()) || !Objects.equals(was.guest6(), now1.guest6())
                || !Objects.equals(was.egress4(), now1.egress4()) || !Objects.equals(was.egress6(), now1.egress6())
                || was.scope() != now1.scope())
            {
                registers.add(now1);
            }
            if (now1.scope() == Scope.PENDING && (was == null || was.scope() != Scope.PENDING))
            {
                refusals.refusal("pending", now1.id(), now1.app(), null, 1, e.reason());
            }
            if (was == null)
            {
                // first seen while static: flows it masqueraded before a move nobody told the monitor of go at once
                if (isStatic(now1.scope()) && (now1.guest4() != null || now1.guest6() != null))
                {
                    deletes.add(new Deletion(now, now1.id(), now1.guest4(), now1.guest6(), null, null, Kind.UNHELD,
                        "first seen " + now1.scope().wireName() + " via " + now1.egress4() + ": flows translated to "
                        + "no held egress address"));
                }
                continue;
            }
            // a guest address given up: its flows are no longer this machine's
            final Ipv4Address oldGuest4 = Objects.equals(was.guest4(), now1.guest4()) ? null : was.guest4();
            final Ipv6Address oldGuest6 = Objects.equals(was.guest6(), now1.guest6()) ? null : was.guest6();
            if (oldGuest4 != null || oldGuest6 != null)
            {
                deletes.add(new Deletion(now, was.id(), oldGuest4, oldGuest6, null, null, Kind.ALL_OR_VIA,
                    "guest address changed"));
            }
            // the egress address changed (not on promotion, which keeps it): old flows go after the drain time
            final Ipv4Address oldEgress4 = was.egress4() != null && !was.egress4().equals(now1.egress4())
                && Objects.equals(was.guest4(), now1.guest4()) ? was.egress4() : null;
            final Ipv6Address oldEgress6 = was.egress6() != null && !was.egress6().equals(now1.egress6())
                && Objects.equals(was.guest6(), now1.guest6()) ? was.egress6() : null;
            if ((oldEgress4 != null && was.guest4() != null) || (oldEgress6 != null && was.guest6() != null))
            {
                deletes.add(new Deletion(now + drainNanos, was.id(), oldEgress4 == null ? null : was.guest4(),
                    oldEgress6 == null ? null : was.guest6(), oldEgress4, oldEgress6, Kind.ALL_OR_VIA,
                    "egress changed from " + was.egress4() + " to " + now1.egress4()));
            }
            // it became static: what it has masqueraded so far left from the host's address, and goes at once. Only
            // that: flows via a pair it left before going host (X released, then a slot of A within X's drain) leave
            // from an address egressd still holds, and X's drain deletion, scheduled when it left X, takes them.
            if (!isStatic(was.scope()) && isStatic(now1.scope()) && (now1.guest4() != null || now1.guest6() != null))
            {
                deletes.add(new Deletion(now, was.id(), now1.guest4(), now1.guest6(), null, null, Kind.UNHELD,
                    "became static (" + was.scope().wireName() + " to " + now1.scope().wireName() + " via "
                    + now1.egress4() + "): flows translated to no held egress address"));
            }
        }
        for (final Tracked was : known.values())
        {
            if (!next.containsKey(was.id()))
            {
                unregisters.add(was);
                handles.clear(was.handle());
                deletes.add(new Deletion(now, was.id(), was.guest4(), was.guest6(), null, null, Kind.ALL_OR_VIA,
                    "machine deleted"));
            }
        }
        known.clear();
        known.putAll(next);
        final GuestIndex.Builder b = new GuestIndex.Builder();
        for (final Tracked t : next.values())
        {
            if (t.guest4() != null)
            {
                b.add4(t.guest4().bits(), t.handle());
            }
            if (t.guest6() != null)
            {
                b.add6(t.guest6().high(), t.guest6().low(), t.handle());
            }
        }
        final GuestIndex built = b.build();
        if (registers.isEmpty() && unregisters.isEmpty() && deletes.isEmpty() && !heldChanged)
        {
            return;
        }
        commands.add(() -> applyUpdate(built, heldNow, registers, unregisters, deletes));
    }

    // ------------------------------------------------------------------------------ queries

    /**
     * One machine's connections, computed on the monitor thread.
     *
     * @param machineId the machine.
     * @param top       the most destinations to list.
     * @return the answer, null for an unknown machine.
     */
    public CompletableFuture<Connections> connections(final String machineId, final int top)
    {
        return query(l ->
        {
            final Tracked t = byId.get(machineId);
            if (t == null)
            {
                return null;
            }
            final List<DestinationUsage> all = l.topDestinations(t.handle(), Math.max(1, top));
            return new Connections(t.id(), l.destinationCap(), l.machineConnections(t.handle()),
                all.isEmpty() ? null : all.get(0), top <= 0 ? List.of() : all, violationsOf(t.handle()));
        });
    }

    /**
     * Runs a read of the ledger on the monitor thread.
     *
     * @param query the read; it must not keep the ledger.
     * @param <T>   its result.
     * @return the result.
     */
    public <T> CompletableFuture<T> query(final Function<ConnectionLedger, T> query)
    {
        final Query<T> q = new Query<>(query, ledger);
        if (stopped)
        {
            q.fail();
            return q.future;
        }
        commands.add(q);
        // The monitor may have stopped between the check and the add, after its last drain: then nothing would
        // ever run the query. Failing it here is harmless if the thread did run it (a completed future stays so).
        if (stopped && commands.remove(q))
        {
            q.fail();
        }
        return q.future;
    }

    /**
     * The use of the cap: connections / cap, rounded to three decimals.
     *
     * @param connections the connections.
     * @param cap         the cap.
     * @return the ratio.
     */
    public static double use(final int connections, final int cap)
    {
        return Math.round(connections * 1000.0 / cap) / 1000.0;
    }

    // ------------------------------------------------------------------------------ monitor thread

    private void run()
    {
        drainCommands();
        resyncNeeded = events != null;
        while (running)
        {
            try
            {
                step();
            }
            catch (final IOException e)
            {
                errors++;
                LOG.error("conntrack: {}; resynchronising in 1 s", e.getMessage());
                resyncNeeded = events != null;
                sleepQuietly(1000);
            }
            catch (final RuntimeException e)
            {
                errors++;
                LOG.error("conntrack monitor", e);
                sleepQuietly(1000);
            }
        }
        drainCommands();
        stopped = true;
        failQueued();
    }

    /** Fails every query still queued (the monitor stopped: nothing will run them) and drops the rest. */
    private void failQueued()
    {
        Runnable c;
        while ((c = commands.poll()) != null)
        {
            if (c instanceof Query<?> q)
            {
                q.fail();
            }
        }
    }

    /**
     * One turn of the loop: queued work, due deletions, a resync if one is needed, one poll.
     *
     * @throws IOException if the socket fails.
     */
    void step() throws IOException
    {
        drainCommands();
        runDueDeletions();
        if (events == null)
        {
            try
            {
                final Runnable c = commands.poll(POLL_MILLIS, TimeUnit.MILLISECONDS);
                if (c != null)
                {
                    c.run();
                }
            }
            catch (final InterruptedException e)
            {
                Thread.currentThread().interrupt();
                running = false;
            }
        }
        else
        {
            if (resyncNeeded)
            {
                resync();
            }
            overranThisPoll = false;
            final int n = events.poll(listener);
            if (draining && (n == 0 && !overranThisPoll || nanoTime.getAsLong() - drainDeadline >= 0))
            {
                draining = false;
                resync();
            }
        }
        final long now = nanoTime.getAsLong();
        if (publishNeeded || now - publishedAt >= SECOND)
        {
            stats = snapshot();
            publishedAt = now;
            publishNeeded = false;
            refusals.flush();
        }
    }

    /** Runs every queued command; monitor thread (tests call it directly on an unstarted monitor). */
    void drainCommands()
    {
        Runnable c;
        while ((c = commands.poll()) != null)
        {
            c.run();
        }
    }

    private void resync() throws IOException
    {
        resyncNeeded = false;
        final long t0 = System.nanoTime();
        ledger.beginResync();
        events.dump(listener);
        final int swept = ledger.endResync();
        resyncs++;
        publishNeeded = true;
        if (resyncs > 1)
        {
            LOG.warn("conntrack: resynchronised the ledger from a full dump after lost events ({} live, {} stale "
                + "dropped, {} ms)", ledger.liveConnections(), swept, (System.nanoTime() - t0) / 1_000_000);
        }
    }

    private void applyUpdate(final GuestIndex built, final HeldAddresses heldNow, final List<Tracked> registers,
        final List<Tracked> unregisters, final List<Deletion> deletes)
    {
        held = heldNow;
        for (final Tracked t : unregisters)
        {
            ledger.unregisterMachine(t.handle());
            byId.remove(t.id());
            byHandle[t.handle()] = null;
            violationsByHandle[t.handle()] = 0;
        }
        for (final Tracked t : registers)
        {
            if (t.handle() >= byHandle.length)
            {
                final int size = Integer.highestOneBit(t.handle()) << 1;
                byHandle = Arrays.copyOf(byHandle, size);
                violationsByHandle = Arrays.copyOf(violationsByHandle, size);
            }
            if (ledger.registerMachine(t.handle(), t.firstPort(), t.lastPort()))
            {
                violationsByHandle[t.handle()] = 0;
            }
            byHandle[t.handle()] = t;
            byId.put(t.id(), t);
        }
        index = built;
        deletions.addAll(deletes);
        publishNeeded = true;
    }

    private void runDueDeletions()
    {
        if (deletions.isEmpty())
        {
            return;
        }
        final long now = nanoTime.getAsLong();
        final List<Deletion> due = new ArrayList<>();
        for (final Iterator<Deletion> it = deletions.iterator(); it.hasNext(); )
        {
            final Deletion d = it.next();
            if (now - d.due() < 0)
            {
                continue;
            }
            it.remove();
            final Tracked current = byId.get(d.machine());
            if (d.kind() == Kind.ALL_OR_VIA && (d.egress4() != null && current != null && d.egress4().equals(current.egress4())
                || d.egress6() != null && current != null && d.egress6().equals(current.egress6())))
            {
                continue; // it moved back to that address meanwhile: those flows are right again
            }
            if (d.kind() != Kind.ALL_OR_VIA && (current == null || !isStatic(current.scope())))
            {
                continue; // deleted meanwhile (its own deletion takes every flow), or host again: masquerade is right
            }
            due.add(d);
        }
        if (due.isEmpty() || flows == null)
        {
            return;
        }
        // One dump for every due deletion; the entries are copied (the dump reuses its event) and deleted after it.
        final List<ConntrackEvent> victims = new ArrayList<>();
        final int[] perDeletion = new int[due.size()];
        final List<Integer> owners = new ArrayList<>();
        try
        {
            flows.dump(new ConntrackEvents.Listener()
            {
                @Override
                public void onEvent(final ConntrackEvent e)
                {
                    for (int i = 0; i < due.size(); i++)
                    {
                        final Deletion d = due.get(i);
                        final Tracked current = d.kind() != Kind.ALL_OR_VIA ? byId.get(d.machine()) : null;
                        if (d.matches(e, current == null ? null : current.egress4(),
                            current == null ? null : current.egress6(), held))
                        {
                            victims.add(e.copy());
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
            });
            for (int v = 0; v < victims.size(); v++)
            {
                if (flows.delete(victims.get(v)))
                {
                    perDeletion[owners.get(v)]++;
                }
            }
        }
        catch (final IOException e)
        {
            errors++;
            // Put them back: flows the kernel may still hold must not be forgotten (invariant 3). Deleting again
            // what is already gone is harmless; a second's wait keeps a failing kernel from being hammered.
            final long retry = nanoTime.getAsLong() + RETRY_DELETIONS_NANOS;
            due.forEach(d -> deletions.add(d.retryAt(retry)));
            LOG.error("conntrack: deleting the flows of machines {} failed, retrying in 1 s: {}",
                due.stream().map(Deletion::machine).distinct().toList(), e.getMessage());
            for (final int deleted : perDeletion)
            {
                flowsDeleted += deleted;
            }
            publishNeeded = true;
            return;
        }
        for (int i = 0; i < due.size(); i++)
        {
            final Deletion d = due.get(i);
            flowsDeleted += perDeletion[i];
            LOG.info("conntrack: deleted {} flows of machine {} ({}; guest {} {}{})", perDeletion[i], d.machine(),
                d.why(), d.guest4(), d.guest6(), d.kind() == Kind.UNHELD ? ", all but via " + held
                    : d.egress4() == null ? "" : ", via " + d.egress4() + " " + d.egress6());
        }
        publishNeeded = true;
    }

    private static boolean isStatic(final Scope scope)
    {
        return scope == Scope.APP || scope == Scope.MACHINE;
    }

    /**
     * One event or dumped entry; monitor thread. Allocates nothing unless a limit is crossed.
     *
     * @param e the event.
     */
    void onEvent(final ConntrackEvent e)
    {
        final ConntrackEvent.Type type = e.type();
        switch (type)
        {
            case NEW -> newEvents++;
            case UPDATE -> updateEvents++;
            case DESTROY -> destroyEvents++;
            default -> existingEvents++; // EXISTING, an entry read by a dump
        }
        final int handle = e.isIpv4() ? index.handle4(e.origSrcV4()) : index.handle6(e.origSrcHigh(), e.origSrcLow());
        if (handle < 0)
        {
            return;
        }
        guestEvents++;
        final long id = e.id() & 0xFFFF_FFFFL;
        final boolean closing = e.l4proto() == TCP && (e.tcpState() == NetlinkConstants.TCP_CONNTRACK_TIME_WAIT
            || e.tcpState() == NetlinkConstants.TCP_CONNTRACK_CLOSE);
        if (type == ConntrackEvent.Type.DESTROY || (type == ConntrackEvent.Type.UPDATE && closing))
        {
            ledger.close(id);
            return;
        }
        if (type == ConntrackEvent.Type.UPDATE || closing || (e.status() & NetlinkConstants.IPS_SRC_NAT) == 0)
        {
            return; // a state change, or not (or no longer) counted by ct count, or not translated: not via the uplink
        }
        final int status = e.isIpv4() ? ledger.open(id, handle, e.origDstV4(), e.replyDstPort())
            : ledger.open(id, handle, e.origDstHigh(), e.origDstLow(), e.replyDstPort());
        if ((status & ConnectionLedger.OPENED) == 0)
        {
            return;
        }
        if ((status & ConnectionLedger.VIOLATION) != 0)
        {
            violationsByHandle[handle]++;
            final Tracked t = byHandle[handle];
            refusals.limit("block_violation", t.id(), t.app(), tuple(e),
                "translated port " + e.replyDstPort() + " outside the machine's block " + t.firstPort() + ".."
                    + t.lastPort());
        }
        if ((status & REACHED_ANY) != 0)
        {
            // The machine's first destination at this level: the one this connection goes to, now exactly there.
            final int cap = ledger.destinationCap();
            final String level;
            final int count;
            if ((status & ConnectionLedger.REACHED_OVER_CAP) != 0)
            {
                level = "over_cap";
                count = cap + 1;
            }
            else if ((status & ConnectionLedger.REACHED_CRITICAL) != 0)
            {
                level = "95";
                count = ledger.criticalThreshold();
            }
            else
            {
                level = "80";
                count = ledger.warningThreshold();
            }
            final Tracked t = byHandle[handle];
            refusals.limit("destination_cap_" + level, t.id(), t.app(), tuple(e),
                count + " of " + cap + " connections to one destination (" + Math.round(count * 100.0 / cap)
                    + "% of the cap)");
        }
    }

    private long violationsOf(final int handle)
    {
        return handle < violationsByHandle.length ? violationsByHandle[handle] : 0;
    }

    private static String tuple(final ConntrackEvent e)
    {
        final String proto = switch (e.l4proto())
        {
            case 6 -> "tcp";
            case 17 -> "udp";
            case 1 -> "icmp";
            case 58 -> "icmpv6";
            default -> "proto" + e.l4proto();
        };
        if (e.isIpv4())
        {
            return proto + " " + new Ipv4Address(e.origSrcV4()) + ":" + e.origSrcPort() + " -> "
                + new Ipv4Address(e.origDstV4()) + ":" + e.origDstPort() + " as " + new Ipv4Address(e.replyDstV4())
                + ":" + e.replyDstPort();
        }
        return proto + " [" + new Ipv6Address(e.origSrcHigh(), e.origSrcLow()) + "]:" + e.origSrcPort() + " -> ["
            + new Ipv6Address(e.origDstHigh(), e.origDstLow()) + "]:" + e.origDstPort() + " as ["
            + new Ipv6Address(e.replyDstHigh(), e.replyDstLow()) + "]:" + e.replyDstPort();
    }

    private Stats snapshot()
    {
        final Map<String, MachineSummary> machines = new HashMap<>();
        int handles = 0;
        for (final Tracked t : byId.values())
        {
            handles = Math.max(handles, t.handle() + 1);
        }
        // One pass over the ledger's destinations for every machine (once a second), not one per machine.
        final int[] busiest = new int[handles];
        ledger.busiestCounts(busiest);
        for (final Tracked t : byId.values())
        {
            machines.put(t.id(), new MachineSummary(ledger.machineConnections(t.handle()), busiest[t.handle()]));
        }
        return new Stats(ledger.destinationCap(), newEvents, updateEvents, destroyEvents, existingEvents, guestEvents,
            overruns,
            resyncs, errors, flowsDeleted, ledger.liveConnections(), ledger.machinesAtWarning(),
            ledger.machinesAtCritical(), ledger.machinesOverCap(), ledger.violations(),
            Collections.unmodifiableMap(machines));
    }

    /**
     * The ledger, for tests running on an unstarted monitor (the thread that calls {@link #step()} owns it).
     *
     * @return the ledger.
     */
    ConnectionLedger ledger()
    {
        return ledger;
    }

    /**
     * Publishes the stats now; for tests on an unstarted monitor.
     *
     * @return the snapshot.
     */
    Stats publish()
    {
        stats = snapshot();
        return stats;
    }

    /**
     * Runs a task on the monitor thread, e.g. a test's pause that lets events pile up in the socket.
     *
     * @param task the task.
     * @return done when it ran.
     */
    public CompletableFuture<Void> runOnMonitorThread(final Runnable task)
    {
        return query(l ->
        {
            task.run();
            return null;
        });
    }

    private static void sleepQuietly(final long millis)
    {
        try
        {
            Thread.sleep(millis);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Stops the thread (within the poll timeout) and closes the subscription. Queries queued before run as usual;
     * any still queued once the thread has stopped, or made from now on, fail at once (the API answers an error
     * rather than waiting for ever).
     */
    @Override
    public void close()
    {
        final Thread t;
        synchronized (this)
        {
            stopped = true;
            running = false;
            t = thread;
        }
        commands.add(() ->
        {
            // wakes a monitor without a kernel from its wait on this queue
        });
        if (t != null)
        {
            try
            {
                t.join(5000);
            }
            catch (final InterruptedException e)
            {
                Thread.currentThread().interrupt();
            }
        }
        failQueued();
        if (events != null)
        {
            events.close();
        }
    }
}
