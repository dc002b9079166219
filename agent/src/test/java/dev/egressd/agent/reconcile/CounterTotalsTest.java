package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.Kernel;
import dev.egressd.agent.kernel.KernelException;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

class CounterTotalsTest
{
    private final CounterTotals totals = new CounterTotals();

    @Test
    void totalsFollowTheKernelAndCarryOnWhenItsCountersRestart()
    {
        assertThat(totals.totals()).isEmpty();
        totals.add(Map.of("cap4", 5L));
        totals.add(Map.of("cap4", 12L));
        assertThat(totals.totals()).containsExactly(Map.entry("cap4", 12L));
        // the table was recreated: the kernel counts from 0 again
        totals.add(Map.of("cap4", 3L));
        assertThat(totals.totals()).containsExactly(Map.entry("cap4", 15L));
        totals.add(Map.of("cap4", 4L));
        assertThat(totals.totals()).containsExactly(Map.entry("cap4", 16L));
    }

    @Test
    void aCounterAtZeroIsListedAndANullValueCountsAsZero()
    {
        final Map<String, Long> raw = new HashMap<>();
        raw.put("spoof4", null);
        raw.put("spoof6", 0L);
        totals.add(raw);
        assertThat(totals.totals()).containsOnly(Map.entry("spoof4", 0L), Map.entry("spoof6", 0L));
    }

    @Test
    void theTotalsAreReplacedNotChangedSoAReaderKeepsAConsistentMap()
    {
        totals.add(Map.of("cap4", 1L));
        final Map<String, Long> before = totals.totals();
        totals.add(Map.of("cap4", 1L));
        assertThat(totals.totals()).as("nothing moved: the same map").isSameAs(before);
        totals.add(Map.of("cap4", 2L));
        assertThat(before).containsExactly(Map.entry("cap4", 1L));
        assertThat(totals.totals()).containsExactly(Map.entry("cap4", 2L));
    }

    @Test
    void aFailedReadKeepsTheLastTotals()
    {
        final Map<String, Long> counters = new HashMap<>(Map.of("unmapped4", 7L));
        final boolean[] failing = {false};
        final Kernel kernel = new Kernel()
        {
            @Override
            public boolean ensureTable()
            {
                return false;
            }

            @Override
            public KernelPlan read()
            {
                return KernelPlan.empty();
            }

            @Override
            public void apply(final List<PlanChange> changes)
            {
            }

            @Override
            public Map<String, Long> counters() throws KernelException
            {
                if (failing[0])
                {
                    throw new KernelException("nft: busy");
                }
                return Map.copyOf(counters);
            }
        };
        totals.read(kernel);
        failing[0] = true;
        counters.put("unmapped4", 9L);
        totals.read(kernel);
        totals.read(kernel);
        assertThat(totals.totals()).containsExactly(Map.entry("unmapped4", 7L));
        failing[0] = false;
        totals.read(kernel);
        assertThat(totals.totals()).containsExactly(Map.entry("unmapped4", 9L));
    }
}
