package dev.egressd.benchmarks;

import dev.egressd.core.ledger.ConnectionLedger;
import dev.egressd.core.ledger.DestinationLedger;
import dev.egressd.core.ledger.ReferenceLedger;
import dev.egressd.core.model.HostSettings;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Ledger open + close (one conntrack NEW and its DESTROY) with 1, 1,000 and 100,000 live (machine, destination)
 * entries, and with the destination under test at 0%, 50% and 99% of its cap (1024), for the allocation-free
 * {@link DestinationLedger} ({@code fast}) and the {@link ReferenceLedger} model ({@code reference}).
 *
 * <p>At 0% every open creates the (machine, destination) entry and every close frees it again, the worst case
 * for the entry index; at 50% and 99% the entry stays. Ids and ports are precomputed and cycled by mask, so
 * consecutive operations touch different connection slots.
 *
 * <p>Targets: open + close at most 30 ns, at least 10x the reference, 0 B/op. Run with:
 * <pre>
 * mvn -B -q -ntp package -DskipTests &amp;&amp;
 *   java -jar benchmarks/target/benchmarks.jar DestinationLedger -f 1 -wi 2 -w 1 -i 3 -r 1 -prof gc
 * </pre>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class DestinationLedgerBenchmark
{
    private static final int OPS = 1024;
    private static final int MASK = OPS - 1;
    private static final int CAP = HostSettings.DEFAULT_DESTINATION_CAP;
    private static final int MACHINE = 0;
    private static final int DESTINATION = 0xC633640A; // 198.51.100.10
    private static final int FIRST_PORT = 1024;
    private static final int BACKGROUND_MACHINES = 100;

    /** Which ledger. */
    @Param({"fast", "reference"})
    public String impl;

    /** Live (machine, destination) entries, the one under test included. */
    @Param({"1", "1000", "100000"})
    public int entries;

    /** How full the destination under test is, in percent of the cap, before each open. */
    @Param({"0", "50", "99"})
    public int fillPercent;

    private ConnectionLedger ledger;
    private final long[] ids = new long[OPS];
    private final int[] ports = new int[OPS];
    private int index;

    /** Builds the ledger at the requested size and fill, and the inputs the benchmark cycles through. */
    @Setup(Level.Trial)
    public void setUp()
    {
        ledger = "fast".equals(impl) ? new DestinationLedger(CAP) : new ReferenceLedger(CAP);
        ledger.registerMachine(MACHINE, FIRST_PORT, FIRST_PORT + 1023);
        for (int m = 1; m <= BACKGROUND_MACHINES; m++)
        {
            ledger.registerMachine(m, (m % 63 + 1) * 1024, (m % 63 + 1) * 1024 + 1023);
        }

        long id = 1_000_000_000L;
        final int fill = CAP * fillPercent / 100;
        for (int i = 0; i < fill; i++)
        {
            ledger.open(id++, MACHINE, DESTINATION, FIRST_PORT + (i & 1023));
        }
        final int background = entries - 1;
        for (int e = 0; e < background; e++)
        {
            final int machine = 1 + e % BACKGROUND_MACHINES;
            final int destination = 0x0A000000 + e / BACKGROUND_MACHINES;
            ledger.open(id++, machine, destination, (machine % 63 + 1) * 1024 + (e & 1023));
        }

        for (int i = 0; i < OPS; i++)
        {
            ids[i] = id++;
            ports[i] = FIRST_PORT + ((i * 7) & 1023);
        }
    }

    /**
     * One connection opens and closes again: the ledger ends as it began.
     *
     * @return both statuses, so nothing is dead code.
     */
    @Benchmark
    public int openClose()
    {
        final int i = index++ & MASK;
        final long id = ids[i];
        return ledger.open(id, MACHINE, DESTINATION, ports[i]) + ledger.close(id);
    }
}
