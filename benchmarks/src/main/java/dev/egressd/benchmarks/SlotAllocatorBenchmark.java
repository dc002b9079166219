package dev.egressd.benchmarks;

import dev.egressd.core.alloc.ReferenceAllocator;
import dev.egressd.core.alloc.SlotAllocator;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

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
 * Slot place + release on a nearly full region: one app with 16 pairs of 64 blocks and 1,000 machines placed, so
 * 24 slots are free and 8 pairs tie for "most free" (every place draws a random tie-break). Each operation places
 * one machine and releases it again, so the state is the same before every operation.
 *
 * <p>{@code fast} is {@link SlotAllocator} (primitive arrays, must allocate 0 B/op); {@code reference} is the
 * test-sources {@link ReferenceAllocator} slot layer (sorted maps and sets), the baseline for the ratio.
 *
 * <p>Run:
 * <pre>
 * mvn -B -q -ntp package -DskipTests \
 *   &amp;&amp; java -jar benchmarks/target/benchmarks.jar SlotAllocator -f 1 -wi 2 -w 1 -i 3 -r 1 -prof gc
 * </pre>
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(1)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@State(Scope.Thread)
public class SlotAllocatorBenchmark
{
    private static final int PAIRS = 16;
    private static final int MACHINES = 1_000;
    private static final String APP_ID = "app";

    /** Which allocator runs. */
    @Param({"fast", "reference"})
    public String implementation;

    private boolean fast;
    private SlotAllocator slots;
    private ReferenceAllocator reference;

    /** Builds the nearly full region, the same for both implementations. */
    @Setup
    public void setUp()
    {
        fast = "fast".equals(implementation);
        final HostSettings host = HostSettings.of("ord");
        slots = new SlotAllocator(host.layout().blockCount(), 42);
        reference = new ReferenceAllocator(host, 42);
        for (int p = 0; p < PAIRS; p++)
        {
            final Ipv4Address ipv4 = new Ipv4Address(0xCB007100 | (p + 1));
            slots.addPair(0, ipv4.bits());
            reference.addPair(APP_ID, new EgressPair(ipv4, new Ipv6Address(0x20010DB800000000L, p + 1), "ord"));
        }
        for (int m = 0; m < MACHINES; m++)
        {
            if (slots.place(0) == SlotAllocator.NONE || reference.place(APP_ID) == null)
            {
                throw new IllegalStateException("region filled too early");
            }
        }
    }

    /**
     * Places one machine and releases its slot.
     *
     * @return the slot (fast) or its block (reference), so the work is not dead code.
     */
    @Benchmark
    public int placeAndRelease()
    {
        if (fast)
        {
            final int slot = slots.place(0);
            slots.release(slot);
            return slot;
        }
        final ReferenceAllocator.Slot slot = reference.place(APP_ID);
        reference.release(slot);
        return slot.block();
    }
}
