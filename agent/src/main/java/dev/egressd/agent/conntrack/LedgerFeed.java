package dev.egressd.agent.conntrack;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.refusals.RefusalLog;
import dev.egressd.core.ledger.ConnectionLedger;
import dev.egressd.core.ledger.DestinationLedger;
import dev.egressd.core.ledger.DestinationUsage;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * What one conntrack event does to the nat-core {@link DestinationLedger}, and the machines the ledger knows by
 * handle. Owned by the monitor thread: the ledger, the guest index, the machines and every counter here are touched
 * by that thread only, so none needs a lock (a single writer).
 *
 * <h2>What is counted</h2>
 * NEW and dumped entries with {@code IPS_SRC_NAT} (they left through the uplink, translated) from a guest address
 * are opened in the ledger under the destination IP with the reply tuple's destination port (the translated source
 * port). DESTROY closes. A TCP UPDATE to TIME_WAIT or CLOSE closes too, because {@code ct count} stops counting such
 * entries (docs/design.md, pitfall 8): without it a guest that churns short connections would look saturated for the
 * 120 s of TIME_WAIT. The later DESTROY, which reports that closing state, is dropped by the kernel-side filter
 * ({@code ctnetlink.EventFilter}); were it read, it would be a harmless unknown close. Of the UPDATEs only that one
 * reaches Java; see benchmarks/README.md "Conntrack ingestion" and "Where the daemon's CPU per conntrack event goes".
 *
 * <p>The event path (parse, index lookup, ledger) allocates nothing; only crossing a limit (a log line) does.
 */
final class LedgerFeed
{
    private static final int TCP = 6;
    private static final int REACHED_ANY = ConnectionLedger.REACHED_WARNING | ConnectionLedger.REACHED_CRITICAL
        | ConnectionLedger.REACHED_OVER_CAP;

    private final ConnectionLedger ledger;
    private final RefusalLog refusals;
    private GuestIndex index = GuestIndex.EMPTY;
    private TrackedMachine[] byHandle = new TrackedMachine[16];
    private long[] violationsByHandle = new long[16];
    private final Map<String, TrackedMachine> byId = new HashMap<>();
    private long newEvents;
    private long existingEvents;
    private long updateEvents;
    private long destroyEvents;
    private long guestEvents;

    /**
     * A feed into a new, empty ledger.
     *
     * @param destinationCap the destination cap.
     * @param refusals       where violations and limits crossed are logged.
     */
    LedgerFeed(final int destinationCap, final RefusalLog refusals)
    {
        this.ledger = new DestinationLedger(destinationCap, 4096, 64);
        this.refusals = refusals;
    }

    /**
     * The ledger; only for the thread that owns it.
     *
     * @return the ledger.
     */
    ConnectionLedger ledger()
    {
        return ledger;
    }

    /**
     * Applies a change of the machines: unregisters, then (re-)registers, then switches to the new guest index.
     *
     * @param update the change.
     */
    void apply(final MachineRegistry.Update update)
    {
        for (final TrackedMachine t : update.unregisters())
        {
            ledger.unregisterMachine(t.handle());
            byId.remove(t.id());
            byHandle[t.handle()] = null;
            violationsByHandle[t.handle()] = 0;
        }
        for (final TrackedMachine t : update.registers())
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
        index = update.index();
    }

    /**
     * A machine as the ledger knows it.
     *
     * @param id the machine id.
     * @return the machine, or null.
     */
    TrackedMachine machine(final String id)
    {
        return byId.get(id);
    }

    /**
     * One event or dumped entry. Allocates nothing unless a limit is crossed.
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
            final TrackedMachine t = byHandle[handle];
            refusals.limit("block_violation", t.id(), t.app(), tuple(e),
                "translated port " + e.replyDstPort() + " outside the machine's block " + t.firstPort() + ".."
                    + t.lastPort());
        }
        if ((status & REACHED_ANY) != 0)
        {
            reached(status, handle, e);
        }
    }

    /** The machine's first destination at a level: the one this connection goes to, now exactly there. */
    private void reached(final int status, final int handle, final ConntrackEvent e)
    {
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
        final TrackedMachine t = byHandle[handle];
        refusals.limit("destination_cap_" + level, t.id(), t.app(), tuple(e),
            count + " of " + cap + " connections to one destination (" + Math.round(count * 100.0 / cap)
                + "% of the cap)");
    }

    /**
     * One machine's connections.
     *
     * @param machineId the machine.
     * @param top       the most destinations to list.
     * @return the answer, null for an unknown machine.
     */
    ConnectionQueries.Connections connections(final String machineId, final int top)
    {
        final TrackedMachine t = byId.get(machineId);
        if (t == null)
        {
            return null;
        }
        final List<DestinationUsage> all = ledger.topDestinations(t.handle(), Math.max(1, top));
        return new ConnectionQueries.Connections(t.id(), ledger.destinationCap(), ledger.machineConnections(t.handle()),
            all.isEmpty() ? null : all.get(0), top <= 0 ? List.of() : all, violationsOf(t.handle()));
    }

    /**
     * The figures now, with the ones kept by the thread that reads the events and by hygiene.
     *
     * @param overruns     times the kernel dropped events.
     * @param resyncs      full dumps into the ledger.
     * @param errors       socket errors and failed deletions.
     * @param flowsDeleted conntrack entries deleted.
     * @return the snapshot.
     */
    ConntrackSnapshot snapshot(final long overruns, final long resyncs, final long errors, final long flowsDeleted)
    {
        final Map<String, ConnectionQueries.MachineSummary> machines = new HashMap<>();
        int handles = 0;
        for (final TrackedMachine t : byId.values())
        {
            handles = Math.max(handles, t.handle() + 1);
        }
        // One pass over the ledger's destinations for every machine (once a second), not one per machine.
        final int[] busiest = new int[handles];
        ledger.busiestCounts(busiest);
        for (final TrackedMachine t : byId.values())
        {
            machines.put(t.id(), new ConnectionQueries.MachineSummary(ledger.machineConnections(t.handle()),
                busiest[t.handle()]));
        }
        return new ConntrackSnapshot(ledger.destinationCap(), newEvents, updateEvents, destroyEvents, existingEvents,
            guestEvents, overruns, resyncs, errors, flowsDeleted, ledger.liveConnections(), ledger.machinesAtWarning(),
            ledger.machinesAtCritical(), ledger.machinesOverCap(), ledger.violations(),
            Collections.unmodifiableMap(machines));
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
}
