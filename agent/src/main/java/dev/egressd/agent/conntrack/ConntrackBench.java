package dev.egressd.agent.conntrack;

import dev.egressd.agent.refusals.RefusalLog;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvents;
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
 * Conntrack ingestion benchmark (issue 5 §6), run by {@code scripts/bench-conntrack} inside a lab host namespace:
 * subscribes like the daemon (ConntrackEvents, 8 MiB buffer), feeds every event through the monitor's event path
 * into the ledger, and prints what it absorbed. The script runs {@code conntrack -E} next to it on the same events.
 *
 * <pre>
 *   ip netns exec P-host java -cp agent/target/egressd.jar dev.egressd.agent.conntrack.ConntrackBench \
 *       SECONDS GUESTS [updates] [RCVBUF_BYTES]
 * </pre>
 * Guests are the lab's 10.77.0.2.. ; it listens for SECONDS and prints one {@code egressd ...} line.
 */
public final class ConntrackBench
{
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
        final long[] counts = new long[4];
        final long[] window = {0, 0};
        final ConntrackMonitor monitor;
        try (ConntrackEvents events = ConntrackEvents.open(rcvbuf, 200, updates))
        {
            final RefusalLog log = new RefusalLog(RefusalLog.Format.TEXT, line -> { }, System::nanoTime);
            monitor = new ConntrackMonitor(null, 65535, log, System::nanoTime);
            monitor.machinesChanged(machines, 0);
            monitor.drainCommands();
            final long[] overruns = {0};
            final ConntrackEvents.Listener listener = new ConntrackEvents.Listener()
            {
                @Override
                public void onEvent(final ConntrackEvent e)
                {
                    final long now = System.nanoTime();
                    if (window[0] == 0)
                    {
                        window[0] = now;
                    }
                    window[1] = now;
                    counts[e.type().ordinal()]++;
                    monitor.onEvent(e);
                }

                @Override
                public void onOverrun()
                {
                    overruns[0]++;
                }
            };
            System.out.println("egressd listening");
            final long deadline = System.nanoTime() + seconds * 1_000_000_000L;
            while (System.nanoTime() < deadline)
            {
                events.poll(listener);
            }
            final long total = counts[0] + counts[1] + counts[2];
            final double span = Math.max(1e-9, (window[1] - window[0]) / 1e9);
            System.out.printf("egressd events=%d new=%d update=%d destroy=%d overruns=%d span_s=%.2f rate_per_s=%.0f "
                + "ledger_live=%d ledger_opens=%d ledger_closes=%d%n", total, counts[0], counts[1], counts[2],
                overruns[0], span, total / span, monitor.ledger().liveConnections(), monitor.ledger().opens(),
                monitor.ledger().closes());
        }
    }
}
