package dev.egressd.benchmarks.scale;

import dev.egressd.agent.conntrack.ConntrackMonitor;
import dev.egressd.agent.conntrack.ConntrackSnapshot;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvents;
import dev.egressd.agent.refusals.RefusalLog;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;

import java.util.ArrayList;
import java.util.List;

/**
 * Conntrack ingestion, run by {@code scripts/bench-conntrack} inside a lab host namespace: subscribes like the
 * daemon (ConntrackEvents, 8 MiB buffer) and runs a {@link ConntrackMonitor} on its own thread as the daemon does,
 * so every event goes through the monitor's event path into the ledger (and an overrun into the daemon's resync);
 * then prints what it absorbed. The script runs {@code conntrack -E} next to it on the same events.
 *
 * <pre>
 *   ip netns exec P-host java -cp benchmarks/target/benchmarks.jar dev.egressd.benchmarks.scale.ConntrackBench \
 *       SECONDS GUESTS [updates] [RCVBUF_BYTES]
 * </pre>
 * Guests are the lab's 10.77.0.2.. ; it listens for SECONDS and prints one {@code egressd ...} line. The span is
 * from the first to the last change the ledger showed, sampled every {@value #SAMPLE_MILLIS} ms.
 */
public final class ConntrackBench
{
    private static final int SAMPLE_MILLIS = 10;

    private ConntrackBench()
    {
    }

    /**
     * Runs the benchmark.
     *
     * @param args seconds, guests, optional {@code updates}, optional receive buffer bytes.
     * @throws Exception if the subscription fails.
     */
    public static void main(final String[] args) throws Exception
    {
        final long seconds = Long.parseLong(args[0]);
        final int guests = Integer.parseInt(args[1]);
        final boolean updates = args.length > 2 && "updates".equals(args[2]);
        final int rcvbuf = args.length > 3 ? Integer.parseInt(args[3]) : ConntrackEvents.DEFAULT_RECEIVE_BUFFER;
        final EgressPair pair = new EgressPair(Ipv4Address.parse("203.0.113.10"), Ipv6Address.parse("2001:db8:10::10"),
            "lab");
        final List<EgressAllocator.MachineView> machines = new ArrayList<>();
        for (int g = 1; g <= guests; g++)
        {
            final Machine m = new Machine("m" + g, "bench", "tap-g" + g, Ipv4Address.parse("10.77.0." + (g + 1)),
                null, null);
            machines.add(new EgressAllocator.MachineView(g, m, new Egress(Scope.APP, pair, 1, 1024, 65535, "bench"),
                null));
        }
        final RefusalLog log = new RefusalLog(RefusalLog.Format.TEXT, line -> { }, System::nanoTime);
        // The monitor closes the subscription.
        final ConntrackMonitor monitor = new ConntrackMonitor(ConntrackEvents.open(rcvbuf, 200, updates), 65535, log,
            System::nanoTime);
        try
        {
            monitor.machinesChanged(machines, 0);
            monitor.start();
            monitor.query(ledger -> null).get(); // the machines are known and the start-up dump is done
            System.out.println("egressd listening");
            final long deadline = System.nanoTime() + seconds * 1_000_000_000L;
            long seen = 0;
            long first = 0;
            long last = 0;
            while (System.nanoTime() < deadline)
            {
                final long activity = monitor.query(ledger -> ledger.opens() + ledger.closes()).get();
                final long now = System.nanoTime();
                if (activity != seen)
                {
                    first = first == 0 ? now : first;
                    last = now;
                    seen = activity;
                }
                Thread.sleep(SAMPLE_MILLIS);
            }
            // The counts are published about once a second: the first snapshot after the deadline has them all.
            final ConntrackSnapshot before = monitor.stats();
            while (monitor.stats() == before)
            {
                Thread.sleep(SAMPLE_MILLIS);
            }
            final ConntrackSnapshot stats = monitor.stats();
            final long[] ledger = monitor.query(l -> new long[] {l.opens(), l.closes()}).get();
            final long total = stats.newEvents() + stats.updateEvents() + stats.destroyEvents();
            final double span = Math.max(1e-9, (last - first) / 1e9);
            System.out.printf("egressd events=%d new=%d update=%d destroy=%d overruns=%d span_s=%.2f rate_per_s=%.0f "
                + "ledger_live=%d ledger_opens=%d ledger_closes=%d%n", total, stats.newEvents(), stats.updateEvents(),
                stats.destroyEvents(), stats.overruns(), span, total / span, stats.liveConnections(), ledger[0], ledger[1]);
        }
        finally
        {
            monitor.close();
        }
    }
}
