package dev.egressd.benchmarks;

import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.KernelPlanner;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlannedMachine;
import dev.egressd.core.plan.ReferencePlanDiff;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The diff between the kernel plans of 4,000 machines before and after one machine moved to another
 * block: what every change request costs the daemon before it reaches the kernel.
 *
 * <p>Run: {@code java -jar benchmarks/target/benchmarks.jar PlanDiff -prof gc}
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(1)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class PlanDiffBenchmark
{
    /** Which diff: the production one, or the set-difference reference model. */
    @Param({"fast", "reference"})
    public String implementation;

    /** Machines on the host. */
    @Param({"4000"})
    public int machines;

    private KernelPlan before;
    private KernelPlan after;

    /** Builds two plans that differ in one machine's block. */
    @Setup
    public void setUp()
    {
        final BlockLayout layout = BlockLayout.STANDARD;
        final List<EgressPair> pairs = new ArrayList<>();
        final int pairCount = (machines + 62) / 63;
        for (int p = 0; p < pairCount; p++)
        {
            pairs.add(new EgressPair(new Ipv4Address(0xCB007100 + p), new Ipv6Address(0x20010db800100000L, p), "ord"));
        }
        final List<PlannedMachine> planned = new ArrayList<>();
        for (int i = 0; i < machines; i++)
        {
            final Machine m = new Machine("m" + i, "app", "tap-m" + i, new Ipv4Address(0x0A4D0002 + i),
                new Ipv6Address(0xfd77000000000000L, 2 + i), null);
            final int block = 1 + i % 63;
            planned.add(new PlannedMachine(m, new Egress(dev.egressd.core.model.Scope.APP, pairs.get(i / 63), block,
                layout.firstPort(block), layout.lastPort(block), "slot")));
        }
        before = KernelPlanner.plan(planned, pairs);
        final PlannedMachine moved = planned.get(machines / 2);
        planned.set(machines / 2, new PlannedMachine(moved.machine(), new Egress(dev.egressd.core.model.Scope.APP,
            pairs.get(0), 0, layout.firstPort(0), layout.lastPort(0), "slot")));
        after = KernelPlanner.plan(planned, pairs);
    }

    /**
     * One diff.
     *
     * @return the changes (two replaces).
     */
    @Benchmark
    public List<PlanChange> diff()
    {
        return "fast".equals(implementation) ? PlanDiff.between(before, after) : ReferencePlanDiff.between(before, after);
    }
}
