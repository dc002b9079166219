package dev.egressd.benchmarks;

import dev.egressd.core.ledger.DestinationLedger;
import dev.egressd.core.model.HostSettings;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * What the daemon's once-a-second conntrack snapshot reads from the ledger: the busiest count of every machine, in
 * one pass over 100,000 live (machine, destination) entries of 1,000 machines. Not a hot path, so no reference
 * baseline: it is the price of keeping no per-machine histogram of counts on the event path
 * ({@link DestinationLedgerBenchmark}). Run with:
 * <pre>
 * java -jar benchmarks/target/benchmarks.jar LedgerSnapshot -f 1 -wi 2 -w 1 -i 3 -r 1 -prof gc
 * </pre>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class LedgerSnapshotBenchmark
{
    private static final int MACHINES = 1000;
    private static final int ENTRIES = 100_000;

    private final DestinationLedger ledger = new DestinationLedger(HostSettings.DEFAULT_DESTINATION_CAP);
    private final int[] busiest = new int[MACHINES];

    /** 100 destinations per machine, 1 to 10 connections each. */
    @Setup(Level.Trial)
    public void setUp()
    {
        for (int m = 0; m < MACHINES; m++)
        {
            ledger.registerMachine(m, 1, 65535);
        }
        long id = 1;
        for (int e = 0; e < ENTRIES; e++)
        {
            final int machine = e % MACHINES;
            for (int c = 0; c <= e % 10; c++)
            {
                ledger.open(id++, machine, 0x0A000000 + e / MACHINES, 1024 + c);
            }
        }
    }

    /**
     * Every machine's busiest count in one pass.
     *
     * @return the last machine's busiest count, so nothing is dead code.
     */
    @Benchmark
    public int busiestCounts()
    {
        ledger.busiestCounts(busiest);
        return busiest[MACHINES - 1];
    }
}
