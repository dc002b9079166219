package dev.egressd.core.alloc;

import static dev.egressd.core.alloc.SlotAllocator.NONE;
import static dev.egressd.core.alloc.SlotAllocator.blockOf;
import static dev.egressd.core.alloc.SlotAllocator.pairOf;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.HashSet;
import java.util.Set;

import org.junit.jupiter.api.Test;

class SlotAllocatorTest
{
    private static final int APP = 0;

    @Test
    void placeChoosesThePairWithTheMostFreeSlots()
    {
        final SlotAllocator slots = new SlotAllocator(4, 1);
        final int p1 = slots.addPair(APP, 1);
        final int p2 = slots.addPair(APP, 2);
        slots.placeOn(p1);
        assertThat(pairOf(slots.place(APP))).isEqualTo(p2);
        slots.placeOn(p2);
        slots.placeOn(p2);
        assertThat(pairOf(slots.place(APP))).isEqualTo(p1);
    }

    @Test
    void placeBreaksTiesAtRandomSoEveryEqualPairIsChosenOverManyTrials()
    {
        final SlotAllocator slots = new SlotAllocator(64, 7);
        final int[] pairs = {slots.addPair(APP, 1), slots.addPair(APP, 2), slots.addPair(APP, 3)};
        final int[] chosen = new int[3];
        for (int i = 0; i < 300; i++)
        {
            final int slot = slots.place(APP);
            for (int p = 0; p < 3; p++)
            {
                chosen[p] += pairOf(slot) == pairs[p] ? 1 : 0;
            }
            slots.release(slot);
        }
        assertThat(java.util.Arrays.stream(chosen).min().orElseThrow()).isGreaterThan(50);
    }

    @Test
    void theSameSeedMakesTheSameChoices()
    {
        assertThat(choices(99)).isEqualTo(choices(99)).isNotEqualTo(choices(100));
    }

    private static String choices(final long seed)
    {
        final SlotAllocator slots = new SlotAllocator(64, seed);
        for (int k = 0; k < 4; k++)
        {
            slots.addPair(APP, k);
        }
        final StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 40; i++)
        {
            final int slot = slots.place(APP);
            sb.append(pairOf(slot));
            slots.release(slot);
        }
        return sb.toString();
    }

    @Test
    void blockZeroIsHandedOutLastAndTheLowestOtherBlockFirst()
    {
        final SlotAllocator slots = new SlotAllocator(4, 1);
        slots.addPair(APP, 1);
        assertThat(blockOf(slots.place(APP))).isEqualTo(1);
        assertThat(blockOf(slots.place(APP))).isEqualTo(2);
        assertThat(blockOf(slots.place(APP))).isEqualTo(3);
        assertThat(blockOf(slots.place(APP))).isEqualTo(0);
        assertThat(slots.place(APP)).isEqualTo(NONE);
    }

    @Test
    void blockZeroIsLastAcrossPairsNotJustInsideOne()
    {
        // The reviewer's example: A has only block 0 free, B only block 5. They tie on free slots, yet B wins.
        for (long seed = 0; seed < 64; seed++)
        {
            final SlotAllocator slots = new SlotAllocator(64, seed);
            final int a = slots.addPair(APP, 1);
            final int b = slots.addPair(APP, 2);
            for (int block = 1; block < 64; block++)
            {
                slots.assign(a, block);
                slots.assign(b, block == 5 ? 0 : block);
            }
            assertThat(slots.place(APP)).as("seed %d", seed).isEqualTo(SlotAllocator.slot(b, 5));
            assertThat(slots.place(APP)).isEqualTo(SlotAllocator.slot(a, 0));
        }
    }

    @Test
    void amongPairsWithAFreeNonZeroBlockTheMostFreeWinsAndBlockZerosComeLast()
    {
        final SlotAllocator slots = new SlotAllocator(4, 3);
        final int zeroOnly = slots.addPair(APP, 1);
        final int roomy = slots.addPair(APP, 2);
        final int tight = slots.addPair(APP, 3);
        slots.assign(zeroOnly, 1);
        slots.assign(zeroOnly, 2);
        slots.assign(zeroOnly, 3);
        slots.assign(roomy, 1);
        slots.assign(tight, 0);
        slots.assign(tight, 1);
        slots.assign(tight, 2);
        assertThat(slots.place(APP)).isEqualTo(SlotAllocator.slot(roomy, 2));  // 3 free beats 1 free
        assertThat(slots.place(APP)).isEqualTo(SlotAllocator.slot(roomy, 3));  // 2 free beats 1 free
        assertThat(slots.place(APP)).isEqualTo(SlotAllocator.slot(tight, 3));  // the last non-zero block anywhere
        assertThat(slots.place(APP)).isIn(SlotAllocator.slot(roomy, 0), SlotAllocator.slot(zeroOnly, 0));
        assertThat(slots.place(APP)).isIn(SlotAllocator.slot(roomy, 0), SlotAllocator.slot(zeroOnly, 0));
        assertThat(slots.place(APP)).isEqualTo(NONE);
    }

    @Test
    void aDrainedPairsFreeNonZeroBlockDoesNotKeepBlockZeroElsewhereBack()
    {
        final SlotAllocator slots = new SlotAllocator(4, 1);
        final int drained = slots.addPair(APP, 1);
        final int open = slots.addPair(APP, 2);
        slots.drained(drained, true);
        for (int block = 1; block < 4; block++)
        {
            slots.assign(open, block);
        }
        assertThat(slots.place(APP)).isEqualTo(SlotAllocator.slot(open, 0));
        assertThat(slots.place(APP)).isEqualTo(NONE);
    }

    @Test
    void whenOnlyBlockZerosAreLeftEachIsChosenSometimes()
    {
        final int[] chosen = new int[3];
        for (long seed = 0; seed < 150; seed++)
        {
            final SlotAllocator slots = new SlotAllocator(4, seed);
            final int[] pairs = {slots.addPair(APP, 1), slots.addPair(APP, 2), slots.addPair(APP, 3)};
            for (final int pair : pairs)
            {
                for (int block = 1; block < 4; block++)
                {
                    slots.assign(pair, block);
                }
            }
            final int slot = slots.place(APP);
            assertThat(blockOf(slot)).isZero();
            for (int p = 0; p < 3; p++)
            {
                chosen[p] += pairOf(slot) == pairs[p] ? 1 : 0;
            }
        }
        assertThat(java.util.Arrays.stream(chosen).min().orElseThrow()).isGreaterThan(20);
    }

    @Test
    void randomnessIsDrawnOnlyWhenPairsTie()
    {
        final SlotAllocator slots = new SlotAllocator(4, 5);
        final int a = slots.addPair(APP, 1);
        final int b = slots.addPair(APP, 2);
        slots.assign(a, 1);
        slots.assign(a, 2);
        slots.assign(a, 3);
        final long state = slots.randomState();
        assertThat(slots.place(APP)).isEqualTo(SlotAllocator.slot(b, 1)); // A offers only block 0: no tie
        assertThat(slots.randomState()).isEqualTo(state);
        slots.assign(b, 2);
        slots.assign(b, 3);
        assertThat(blockOf(slots.place(APP))).isZero(); // only block 0s left: A's and B's tie
        assertThat(slots.randomState()).isNotEqualTo(state);
    }

    @Test
    void oneBlockPairsHandOutBlockZero()
    {
        final SlotAllocator slots = new SlotAllocator(1, 1);
        final int pair = slots.addPair(APP, 1);
        assertThat(slots.place(APP)).isEqualTo(SlotAllocator.slot(pair, 0));
        assertThat(slots.place(APP)).isEqualTo(NONE);
    }

    @Test
    void aPinMayTakeBlockZeroWhileAnotherPairHasRoom()
    {
        final SlotAllocator slots = new SlotAllocator(2, 1);
        final int pinned = slots.addPair(APP, 1);
        slots.addPair(APP, 2);
        slots.assign(pinned, 1);
        assertThat(slots.placeOn(pinned)).isEqualTo(SlotAllocator.slot(pinned, 0));
    }

    @Test
    void aReleasedBlockIsTheNextOneHandedOut()
    {
        final SlotAllocator slots = new SlotAllocator(64, 1);
        final int pair = slots.addPair(APP, 1);
        for (int i = 0; i < 10; i++)
        {
            slots.place(APP);
        }
        slots.release(SlotAllocator.slot(pair, 4));
        assertThat(slots.place(APP)).isEqualTo(SlotAllocator.slot(pair, 4));
    }

    @Test
    void sixtyFourBlocksFillOnePairExactlyOnce()
    {
        final SlotAllocator slots = new SlotAllocator(64, 1);
        slots.addPair(APP, 1);
        final Set<Integer> blocks = new HashSet<>();
        for (int i = 0; i < 64; i++)
        {
            assertThat(blocks.add(blockOf(slots.place(APP)))).isTrue();
        }
        assertThat(blocks).hasSize(64);
        assertThat(slots.place(APP)).isEqualTo(NONE);
        assertThat(slots.usedBits(0)).isEqualTo(-1L);
    }

    @Test
    void aDrainedPairKeepsItsSlotsAndTakesNoNewOne()
    {
        final SlotAllocator slots = new SlotAllocator(4, 1);
        final int p1 = slots.addPair(APP, 1);
        final int p2 = slots.addPair(APP, 2);
        final int held = slots.placeOn(p1);
        slots.drained(p1, true);
        for (int i = 0; i < 4; i++)
        {
            assertThat(pairOf(slots.place(APP))).isEqualTo(p2);
        }
        assertThat(slots.place(APP)).isEqualTo(NONE);
        assertThat(slots.placeOn(p1)).isEqualTo(NONE);
        assertThat(slots.usedSlots(p1)).isEqualTo(1);
        assertThat(slots.freeSlotsOfApp(APP)).isZero();
        slots.release(held);
        slots.drained(p1, false);
        assertThat(pairOf(slots.place(APP))).isEqualTo(p1);
    }

    @Test
    void placeOnPinsToOnePairAndReturnsNoneWhenItIsFull()
    {
        final SlotAllocator slots = new SlotAllocator(2, 1);
        slots.addPair(APP, 1);
        final int pinned = slots.addPair(APP, 2);
        assertThat(pairOf(slots.placeOn(pinned))).isEqualTo(pinned);
        assertThat(pairOf(slots.placeOn(pinned))).isEqualTo(pinned);
        assertThat(slots.placeOn(pinned)).isEqualTo(NONE);
    }

    @Test
    void assignTakesAnExactBlockOnlyWhileItIsFree()
    {
        final SlotAllocator slots = new SlotAllocator(64, 1);
        final int pair = slots.addPair(APP, 1);
        slots.drained(pair, true);
        assertThat(slots.assign(pair, 17)).isEqualTo(SlotAllocator.slot(pair, 17));
        assertThat(slots.assign(pair, 17)).isEqualTo(NONE);
        assertThat(slots.assign(pair, 64)).isEqualTo(NONE);
        assertThat(slots.isUsed(pair, 17)).isTrue();
    }

    @Test
    void releasingASlotThatIsNotHeldThrows()
    {
        final SlotAllocator slots = new SlotAllocator(4, 1);
        final int pair = slots.addPair(APP, 1);
        final int slot = slots.place(APP);
        slots.release(slot);
        assertThatThrownBy(() -> slots.release(slot)).isInstanceOf(IllegalStateException.class);
        assertThatThrownBy(() -> slots.release(SlotAllocator.slot(pair + 5, 1)))
            .isInstanceOf(IllegalStateException.class);
    }

    @Test
    void anAppWithoutPairsGetsNoSlotAndAppsDoNotShare()
    {
        final SlotAllocator slots = new SlotAllocator(4, 1);
        slots.addPair(1, 1);
        assertThat(slots.place(0)).isEqualTo(NONE);
        assertThat(slots.place(5)).isEqualTo(NONE);
        assertThat(slots.appOf(pairOf(slots.place(1)))).isEqualTo(1);
    }

    @Test
    void aRemovedPairsIndexIsReusedAndItsAppForgetsIt()
    {
        final SlotAllocator slots = new SlotAllocator(4, 1);
        final int p1 = slots.addPair(APP, 1);
        slots.place(APP);
        slots.removePair(p1);
        assertThat(slots.pairCount(APP)).isZero();
        assertThat(slots.place(APP)).isEqualTo(NONE);
        final int again = slots.addPair(3, 9);
        assertThat(again).isEqualTo(p1);
        assertThat(slots.usedSlots(again)).isZero();
        assertThat(slots.appOf(again)).isEqualTo(3);
    }

    @Test
    void arraysGrowPastTheirInitialCapacity()
    {
        final SlotAllocator slots = new SlotAllocator(64, 1);
        for (int i = 0; i < 100; i++)
        {
            slots.addPair(i % 40, i);
        }
        assertThat(slots.pairCount(39)).isEqualTo(2);
        assertThat(slots.freeSlotsOfApp(39)).isEqualTo(128);
        assertThat(slots.place(39)).isNotEqualTo(NONE);
    }
}
