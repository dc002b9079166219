package dev.egressd.benchmarks.scale;

import dev.egressd.agent.kernel.NftKernel;
import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.model.Scope;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.KernelPlanner;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlannedMachine;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * What the kernel side costs as a host grows: for N machines (IPv4 + IPv6, 63 per pair), the first apply, one
 * machine's remap applied as one transaction, and what one reconcile of the daemon asks of the kernel: the check of
 * the table ({@link NftKernel#ensureTable()}), a read-back ({@link NftKernel#read()}) and the named
 * counters ({@link NftKernel#counters()}), each deep (the whole table, rules included: what is done when a
 * deep check is due) and shallow (the sets and maps by name: every other reconcile). Each line is checked against
 * the plan applied, both ways of reading.
 * Run by {@code scripts/bench-kernel}, inside a namespace it creates; prints one line per N.
 *
 * <p>Not a JMH benchmark: each operation is a system call into nftables costing milliseconds, so a median of
 * a few repetitions is the honest figure.
 */
public final class KernelScaleBench
{
    private static final int REPEATS = 10;
    /** A pacing factor that makes every deep check of the run not due: only the shallow ones are measured. */
    private static final int SHALLOW = 1_000_000;
    private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();

    private KernelScaleBench()
    {
    }

    /**
     * Runs the measurement.
     *
     * @param args the namespace name, the uplink name inside it, then one or more machine counts.
     * @throws Exception if the kernel refuses.
     */
    public static void main(final String[] args) throws Exception
    {
        if (args.length < 3)
        {
            System.err.println("usage: KernelScaleBench NAMESPACE UPLINK MACHINES...");
            System.exit(2);
        }
        try (NetNamespace ns = NetNamespace.enter(args[0]))
        {
            for (int a = 2; a < args.length; a++)
            {
                final int machines = Integer.parseInt(args[a]);
                final String line = ns.call(() -> measure(args[1], machines));
                System.out.println(line);
            }
        }
    }

    private static String measure(final String uplink, final int n) throws Exception
    {
        try (NftKernel kernel = NftKernel.open(DataplaneConfig.defaults(uplink)))
        {
            kernel.ensureTable();
            final BlockLayout layout = BlockLayout.STANDARD;
            final List<EgressPair> pairs = new ArrayList<>();
            for (int p = 0; p < (n + 62) / 63; p++)
            {
                pairs.add(new EgressPair(new Ipv4Address(0xCB007100 + p), new Ipv6Address(0x20010db800100000L, p + 1),
                    "ord"));
            }
            final List<PlannedMachine> planned = new ArrayList<>();
            for (int i = 0; i < n; i++)
            {
                final Machine m = new Machine("m" + i, "app", "tap-m" + i, new Ipv4Address(0x0A4D0002 + i),
                    new Ipv6Address(0xfd77000000000000L, 2 + i), null);
                planned.add(new PlannedMachine(m, slot(pairs.get(i / 63), 1 + i % 63, layout)));
            }
            KernelPlan plan = KernelPlanner.plan(planned, pairs);
            long start = System.nanoTime();
            kernel.apply(PlanDiff.between(kernel.read(), plan));
            final double firstApply = (System.nanoTime() - start) / 1e6;

            final double[] fullReads = new double[REPEATS];
            final double[] reads = new double[REPEATS];
            final double[] remaps = new double[REPEATS];
            final double[] deepChecks = new double[REPEATS];
            final double[] deepCpu = new double[REPEATS];
            final double[] checks = new double[REPEATS];
            final double[] counters = new double[REPEATS];
            for (int r = 0; r < REPEATS; r++)
            {
                // Deep: a read of the whole table and the check of the fixed chains' rules, as when they are due.
                kernel.paceDeepChecks(0);
                final long cpu = THREADS.getCurrentThreadCpuTime();
                start = System.nanoTime();
                kernel.ensureTable();
                deepChecks[r] = (System.nanoTime() - start) / 1e6;
                start = System.nanoTime();
                final KernelPlan full = kernel.readFull();
                fullReads[r] = (System.nanoTime() - start) / 1e6;
                // This thread's CPU (user + system: libnftables runs on it, and the kernel's dumps in its syscalls).
                deepCpu[r] = (THREADS.getCurrentThreadCpuTime() - cpu) / 1e6;
                // Shallow: what the daemon's reconcile does between deep ones (its NftKernel paces them).
                kernel.paceDeepChecks(SHALLOW);
                start = System.nanoTime();
                kernel.ensureTable();
                checks[r] = (System.nanoTime() - start) / 1e6;
                start = System.nanoTime();
                kernel.counters();
                counters[r] = (System.nanoTime() - start) / 1e6;
                start = System.nanoTime();
                final KernelPlan actual = kernel.read();
                reads[r] = (System.nanoTime() - start) / 1e6;
                if (!actual.equals(plan) || !full.equals(plan))
                {
                    throw new IllegalStateException("the table read back differs from the plan applied");
                }
                final PlannedMachine moved = planned.get(r);
                planned.set(r, new PlannedMachine(moved.machine(),
                    slot(pairs.get(0), moved.egress().block() % 63 + 1, layout)));
                final KernelPlan next = KernelPlanner.plan(planned, pairs);
                final List<PlanChange> changes = PlanDiff.between(plan, next);
                start = System.nanoTime();
                kernel.apply(changes);
                remaps[r] = (System.nanoTime() - start) / 1e6;
                plan = next;
            }
            if (!kernel.read().equals(plan) || !kernel.readFull().equals(plan))
            {
                throw new IllegalStateException("the table read back after the remaps differs from the plan");
            }
            kernel.teardown();
            return String.format("machines %5d (%6d elements): first apply %8.1f ms; one machine remapped (v4 + v6, one"
                + " transaction) %s; deep: read of the whole table %s, ensureTable %s, CPU of both %s; shallow: read of the sets %s,"
                + " ensureTable %s; counters %s",
                n, plan.size(), firstApply, stats(remaps), stats(fullReads), stats(deepChecks), stats(deepCpu), stats(reads),
                stats(checks), stats(counters));
        }
    }

    private static String stats(final double[] ms)
    {
        Arrays.sort(ms);
        return String.format("median %.1f ms (max %.1f)", ms[ms.length / 2], ms[ms.length - 1]);
    }

    private static Egress slot(final EgressPair pair, final int block, final BlockLayout layout)
    {
        return new Egress(Scope.APP, pair, block, layout.firstPort(block), layout.lastPort(block), "bench");
    }
}
