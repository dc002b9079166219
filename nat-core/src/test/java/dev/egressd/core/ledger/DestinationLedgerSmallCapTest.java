package dev.egressd.core.ledger;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Seeded differential runs against ReferenceLedger at small caps (warning == critical for caps 1..4),
 * with enough destinations and machines to force idle-entry sweeps, index growth, pool growth and connection
 * table growth while the last-entry cache points at entries being swept; compares busiestCounts too.
 */
class DestinationLedgerSmallCapTest
{
    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 4, 5, 20})
    void agreesWithTheReferenceAtSmallCaps(final int cap)
    {
        for (int seed = 0; seed < 60; seed++)
        {
            run(cap, seed * 31L + cap);
        }
    }

    private static void run(final int cap, final long seed)
    {
        final Random r = new Random(seed);
        final int machines = 1 + r.nextInt(6);
        final int destinations = 1 + r.nextInt(60);
        final int ids = 8 + r.nextInt(400);
        final DestinationLedger fast = new DestinationLedger(cap);
        final ReferenceLedger ref = new ReferenceLedger(cap);
        for (int step = 0; step < 3000; step++)
        {
            final String at = "seed " + seed + " step " + step;
            final int roll = r.nextInt(100);
            final int m = r.nextInt(machines);
            if (roll < 5)
            {
                final int first = 1 + r.nextInt(100);
                final int last = first + r.nextInt(200);
                assertThat(fast.registerMachine(m, first, last)).as(at).isEqualTo(ref.registerMachine(m, first, last));
            }
            else if (roll < 6)
            {
                assertThat(fast.unregisterMachine(m)).as(at).isEqualTo(ref.unregisterMachine(m));
            }
            else if (roll < 62)
            {
                final long id = r.nextInt(ids);
                // skewed destinations: runs of opens to one destination exercise the last-entry cache
                final int d = r.nextInt(4) == 0 ? r.nextInt(destinations) : r.nextInt(Math.min(3, destinations));
                final int port = 1 + r.nextInt(300);
                final long high = d % 2 == 0 ? LedgerKeys.IPV4_HIGH : 0x20010DB800000000L;
                final long low = d % 2 == 0 ? LedgerKeys.ipv4Low(0xC6336400 + d) : d;
                assertThat(fast.open(id, m, high, low, port)).as(at)
                    .isEqualTo(ref.open(id, m, high, low, port));
            }
            else if (roll < 95)
            {
                final long id = r.nextInt(ids);
                assertThat(fast.close(id)).as(at).isEqualTo(ref.close(id));
            }
            else if (roll < 97)
            {
                fast.beginResync();
                ref.beginResync();
            }
            else if (roll < 99)
            {
                assertThat(fast.endResync()).as(at).isEqualTo(ref.endResync());
            }
            else
            {
                fast.clear();
                ref.clear();
            }
            assertThat(fast.liveConnections()).as(at).isEqualTo(ref.liveConnections());
            assertThat(fast.liveDestinations()).as(at).isEqualTo(ref.liveDestinations());
            assertThat(fast.machinesAtWarning()).as(at).isEqualTo(ref.machinesAtWarning());
            assertThat(fast.machinesAtCritical()).as(at).isEqualTo(ref.machinesAtCritical());
            assertThat(fast.machinesOverCap()).as(at).isEqualTo(ref.machinesOverCap());
            final int[] fb = new int[machines + 1];
            final int[] rb = new int[machines + 1];
            fast.busiestCounts(fb);
            ref.busiestCounts(rb);
            assertThat(fb).as(at).isEqualTo(rb);
            for (int machine = 0; machine < machines; machine++)
            {
                assertThat(fast.machineConnections(machine)).as(at).isEqualTo(ref.machineConnections(machine));
                assertThat(fast.busiestCount(machine)).as(at).isEqualTo(ref.busiestCount(machine));
            }
        }
    }
}
