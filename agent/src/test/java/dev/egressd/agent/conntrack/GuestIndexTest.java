package dev.egressd.agent.conntrack;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.HashMap;
import java.util.Map;
import java.util.Random;

import org.junit.jupiter.api.Test;

class GuestIndexTest
{
    @Test
    void anEditedIndexAnswersAsAMapThroughRandomPutsAndRemovals()
    {
        randomEdits(false);
    }

    @Test
    void anIndexEditedInPlaceAnswersAsAMapThroughRandomPutsAndRemovalsAndTheSharedEmptyOneStaysEmpty()
    {
        randomEdits(true);
        for (int a = 0; a < 300; a++)
        {
            assertThat(GuestIndex.EMPTY.handle4(a)).isEqualTo(GuestIndex.MISSING);
            assertThat(GuestIndex.EMPTY.handle6(0xFD00L, a)).isEqualTo(GuestIndex.MISSING);
        }
    }

    /** Random puts and removals, each step's index checked against a map (and, copied, the one it came from). */
    private static void randomEdits(final boolean inPlace)
    {
        final Random random = new Random(3);
        final Map<Integer, Integer> want4 = new HashMap<>();
        final Map<Long, Integer> want6 = new HashMap<>();
        GuestIndex index = inPlace ? new GuestIndex.Builder().build() : GuestIndex.EMPTY;
        for (int step = 0; step < 3000; step++)
        {
            final GuestIndex before = index;
            final GuestIndex.Editor e = inPlace ? index.editInPlace() : index.edit();
            for (int k = random.nextInt(4); k >= 0; k--)
            {
                // a small key space, so runs collide and removals shift entries back; some keys grow the table
                final int a = random.nextInt(step < 1500 ? 300 : 60);
                final int handle = random.nextInt(50);
                if (random.nextInt(3) == 0)
                {
                    final Integer was4 = want4.get(a);
                    e.remove4(a, handle);
                    if (was4 != null && was4 == handle)
                    {
                        want4.remove(a);
                    }
                    final Integer was6 = want6.get((long)a);
                    e.remove6(0xFD00L, a, handle);
                    if (was6 != null && was6 == handle)
                    {
                        want6.remove((long)a);
                    }
                }
                else
                {
                    e.put4(a, handle);
                    want4.put(a, handle);
                    e.put6(0xFD00L, a, handle);
                    want6.put((long)a, handle);
                }
            }
            final Map<Integer, Integer> old4 = new HashMap<>();
            for (int a = 0; a < 300; a++)
            {
                old4.put(a, before.handle4(a));
            }
            index = e.build();
            for (int a = 0; a < 300; a++)
            {
                assertThat(index.handle4(a)).as("step %d, v4 %d", step, a)
                    .isEqualTo(want4.getOrDefault(a, GuestIndex.MISSING));
                assertThat(index.handle6(0xFD00L, a)).as("step %d, v6 %d", step, a)
                    .isEqualTo(want6.getOrDefault((long)a, GuestIndex.MISSING));
                if (!inPlace)
                {
                    assertThat(before.handle4(a)).as("step %d: the index edited from is unchanged", step)
                        .isEqualTo(old4.get(a));
                }
            }
        }
        // and equal to one built whole from the same addresses
        final GuestIndex.Builder b = new GuestIndex.Builder();
        want4.forEach((a, h) -> b.add4(a, h));
        want6.forEach((a, h) -> b.add6(0xFD00L, a, h));
        final GuestIndex whole = b.build();
        for (int a = 0; a < 300; a++)
        {
            assertThat(index.handle4(a)).isEqualTo(whole.handle4(a));
            assertThat(index.handle6(0xFD00L, a)).isEqualTo(whole.handle6(0xFD00L, a));
        }
        assertThat(index.cover(16)).isEqualTo(whole.cover(16));
    }
}
