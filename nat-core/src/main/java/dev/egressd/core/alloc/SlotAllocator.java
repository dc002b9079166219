package dev.egressd.core.alloc;

import java.util.Arrays;

/*
 * Implementation notes
 * ====================
 *
 * Identity. Pairs and apps are dense int indexes chosen by this class (pairs, via addPair) and by the
 * caller (apps). A slot is encoded in one int: pairIndex << 6 | block, so a slot fits a primitive
 * field, an int[] element or a map key with no boxing. -1 (NONE) means "no slot".
 *
 * Bit layout, per pair p:
 *   used[p]     long, bit b set  <=>  block b of pair p is held by some machine.
 *               Only bits 0..blockCount-1 are ever set (allMask); blockCount <= 64.
 *   drained[p]  true: keeps its held blocks, takes no new placement (place and placeOn skip it).
 *   pairApp[p]  owning app index, or -1 when index p is free for reuse.
 *   pairKey[p]  the caller's ordering key (the pair's IPv4 bits, compared unsigned).
 * Per app a:
 *   appPairs[a][0 .. appPairCount[a]-1]  the app's pair indexes, sorted by pairKey (unsigned), so a
 *               tie-break among equals is "the r-th equal pair in IPv4 order": the same rule the
 *               reference model applies, which lets the property test demand identical choices.
 *
 * Invariants:
 *   - a pair index is in exactly one app list iff pairApp[p] != -1;
 *   - (used[p] & ~allMask) == 0;
 *   - a (pair, block) is handed out at most once until it is released (place/placeOn/assign set a bit
 *     that was clear; release clears a bit that was set, or throws).
 *
 * Placement rule (place): block 0, whose range loses port 0, is the last resort across ALL the app's
 * non-drained pairs, not just inside one pair. Each non-drained pair falls in one of three tiers, read off
 * its used word with two masks and no allocation:
 *   tier 1  (~used & nonZeroMask) != 0        it has a free block other than 0;
 *   tier 2  not tier 1, (used & 1) == 0       its only free block is 0 (so exactly one free slot);
 *   full    ~used & allMask == 0.
 * If tier 1 is non-empty: the tier-1 pair with the MOST free slots (fewest used bits: Long.bitCount; block 0
 * counts as a free slot here, it is still capacity), ties broken uniformly at random, and on it the lowest
 * free block other than 0 (Long.lowestOneBit of ~used & nonZeroMask). Else, if tier 2 is non-empty: block 0
 * of one tier-2 pair, uniformly at random (they all have one free slot, so "most free" is a tie among all).
 * Else NONE. So a machine gets a block 0 only when no non-drained pair of the app has a free non-zero block.
 * Randomness (SplitMix64) is drawn only when at least two pairs tie, so a deterministic situation consumes
 * none. One pass classifies and ranks; a second pass, only on a tie, finds the r-th equal pair in the
 * app list's (IPv4) order.
 * placeOn (a pin) fixes the pair, so the rule applies inside that pair only: its lowest free non-zero block,
 * block 0 when nothing else on it is free.
 *
 * Complexity: place(app) is O(pairs of the app), two passes at most, a popcount per tier-1 pair; placeOn,
 * assign and release are O(1). addPair/removePair are O(pairs of the app) (sorted insert/remove) and may
 * grow the arrays; they are control-plane operations. place/placeOn/assign/release allocate nothing
 * (see SlotAllocatorBenchmark: 0 B/op under -prof gc).
 *
 * Threading: single writer, no locks, like an Agrona collection. The daemon serialises all calls.
 */

/**
 * Hands out slots (pair, block) to the apps that own the pairs: the allocation-free hot path of the allocator.
 *
 * <p>Pairs are dense int indexes returned by {@link #addPair(int, int)}; apps are dense int indexes chosen by
 * the caller. A slot is the int {@code pairIndex << 6 | block}; {@link #NONE} (-1) means no slot.
 */
public final class SlotAllocator
{
    /** The sentinel for "no slot" / "no pair". */
    public static final int NONE = -1;

    private static final int BLOCK_BITS = 6;
    private static final int BLOCK_MASK = (1 << BLOCK_BITS) - 1;
    private static final int INITIAL_CAPACITY = 16;
    private static final int[] NO_PAIRS = new int[0];

    private final int blockCount;
    private final long allMask;
    private final long nonZeroMask;
    private final SplitMix64 random;

    private long[] used = new long[INITIAL_CAPACITY];
    private boolean[] drained = new boolean[INITIAL_CAPACITY];
    private int[] pairApp = filled(INITIAL_CAPACITY);
    private int[] pairKey = new int[INITIAL_CAPACITY];
    private int pairLimit;
    private int[] freePairs = new int[INITIAL_CAPACITY];
    private int freePairCount;

    private int[][] appPairs = new int[INITIAL_CAPACITY][];
    private int[] appPairCount = new int[INITIAL_CAPACITY];

    /**
     * Creates an empty allocator.
     *
     * @param blockCount blocks per pair, 1..64.
     * @param seed       seed of the tie-break generator; the same seed and calls give the same choices.
     */
    public SlotAllocator(final int blockCount, final long seed)
    {
        if (blockCount < 1 || blockCount > 64)
        {
            throw new IllegalArgumentException("blockCount must be 1..64, got " + blockCount);
        }
        this.blockCount = blockCount;
        this.allMask = blockCount == 64 ? -1L : (1L << blockCount) - 1;
        this.nonZeroMask = allMask & ~1L;
        this.random = new SplitMix64(seed);
        Arrays.fill(appPairs, NO_PAIRS);
    }

    /**
     * Encodes a slot.
     *
     * @param pair  the pair index.
     * @param block the block index 0..63.
     * @return the slot.
     */
    public static int slot(final int pair, final int block)
    {
        return pair << BLOCK_BITS | block;
    }

    /**
     * The pair index of a slot.
     *
     * @param slot an encoded slot.
     * @return its pair index.
     */
    public static int pairOf(final int slot)
    {
        return slot >>> BLOCK_BITS;
    }

    /**
     * The block index of a slot.
     *
     * @param slot an encoded slot.
     * @return its block index.
     */
    public static int blockOf(final int slot)
    {
        return slot & BLOCK_MASK;
    }

    /**
     * Blocks per pair.
     *
     * @return the block count.
     */
    public int blockCount()
    {
        return blockCount;
    }

    /**
     * Adds an empty, non-drained pair to an app.
     *
     * @param app the app index, 0 or more (the arrays grow as needed).
     * @param key the ordering key among the app's pairs, compared unsigned (the IPv4 bits).
     * @return the new pair index.
     */
    public int addPair(final int app, final int key)
    {
        if (app < 0)
        {
            throw new IllegalArgumentException("app index must be >= 0, got " + app);
        }
        final int pair = freePairCount > 0 ? freePairs[--freePairCount] : newPairIndex();
        used[pair] = 0L;
        drained[pair] = false;
        pairApp[pair] = app;
        pairKey[pair] = key;

        ensureApp(app);
        int[] pairs = appPairs[app];
        final int count = appPairCount[app];
        if (count == pairs.length)
        {
            pairs = Arrays.copyOf(pairs, Math.max(4, count * 2));
            appPairs[app] = pairs;
        }
        int at = count;
        while (at > 0 && Integer.compareUnsigned(pairKey[pairs[at - 1]], key) > 0)
        {
            pairs[at] = pairs[at - 1];
            at--;
        }
        pairs[at] = pair;
        appPairCount[app] = count + 1;
        return pair;
    }

    /**
     * Removes a pair from its app, dropping whatever blocks it still holds: the caller moves the machines first.
     *
     * @param pair the pair index.
     */
    public void removePair(final int pair)
    {
        final int app = checkPair(pair);
        final int[] pairs = appPairs[app];
        final int count = appPairCount[app];
        int at = 0;
        while (pairs[at] != pair)
        {
            at++;
        }
        System.arraycopy(pairs, at + 1, pairs, at, count - at - 1);
        appPairCount[app] = count - 1;
        pairApp[pair] = NONE;
        used[pair] = 0L;
        drained[pair] = false;
        if (freePairCount == freePairs.length)
        {
            freePairs = Arrays.copyOf(freePairs, freePairCount * 2);
        }
        freePairs[freePairCount++] = pair;
    }

    /**
     * Drains or undrains a pair: a drained pair keeps its slots and takes no new placement.
     *
     * @param pair    the pair index.
     * @param drained the new state.
     */
    public void drained(final int pair, final boolean drained)
    {
        checkPair(pair);
        this.drained[pair] = drained;
    }

    /**
     * Whether a pair is drained.
     *
     * @param pair the pair index.
     * @return true if drained.
     */
    public boolean isDrained(final int pair)
    {
        checkPair(pair);
        return drained[pair];
    }

    /**
     * Places one machine of an app. Block 0 (whose range loses port 0) is the app's last resort: among the app's
     * non-drained pairs that still have a free block other than 0, the one with the most free slots (random among
     * equals), and on it the lowest free block other than 0; only when no non-drained pair of the app has such a
     * block, block 0 of a non-drained pair that has it free (random among those, which all have exactly one free
     * slot).
     *
     * @param app the app index.
     * @return the slot, or {@link #NONE} when every pair of the app is full or drained (or it has none).
     */
    public int place(final int app)
    {
        if (app < 0 || app >= appPairCount.length)
        {
            return NONE;
        }
        final int[] pairs = appPairs[app];
        final int count = appPairCount[app];
        final long[] used = this.used;
        final boolean[] drained = this.drained;
        final long nonZeroMask = this.nonZeroMask;

        // One pass, two tiers. Tier 1: pairs with a free block other than 0, ranked by fewest used bits.
        // Tier 2: pairs whose only free block is 0 (so each has exactly one free slot: they all tie).
        int bestUsed = Integer.MAX_VALUE;
        int best = NONE;
        int ties = 0;
        int zeroOnly = NONE;
        int zeroOnlyCount = 0;
        for (int i = 0; i < count; i++)
        {
            final int pair = pairs[i];
            if (drained[pair])
            {
                continue;
            }
            final long u = used[pair];
            if ((~u & nonZeroMask) != 0)
            {
                final int bits = Long.bitCount(u);
                if (bits < bestUsed)
                {
                    bestUsed = bits;
                    best = pair;
                    ties = 1;
                }
                else if (bits == bestUsed)
                {
                    ties++;
                }
            }
            else if ((u & 1L) == 0)
            {
                if (zeroOnlyCount++ == 0)
                {
                    zeroOnly = pair;
                }
            }
        }
        if (best != NONE)
        {
            if (ties > 1)
            {
                int pick = random.nextInt(ties);
                for (int i = 0; i < count; i++)
                {
                    final int pair = pairs[i];
                    final long u = used[pair];
                    if (!drained[pair] && (~u & nonZeroMask) != 0 && Long.bitCount(u) == bestUsed && pick-- == 0)
                    {
                        best = pair;
                        break;
                    }
                }
            }
            final long u = used[best];
            final long bit = Long.lowestOneBit(~u & nonZeroMask);
            used[best] = u | bit;
            return slot(best, Long.numberOfTrailingZeros(bit));
        }
        if (zeroOnly == NONE)
        {
            return NONE;
        }
        if (zeroOnlyCount > 1)
        {
            int pick = random.nextInt(zeroOnlyCount);
            for (int i = 0; i < count; i++)
            {
                final int pair = pairs[i];
                final long u = used[pair];
                if (!drained[pair] && (~u & nonZeroMask) == 0 && (u & 1L) == 0 && pick-- == 0)
                {
                    zeroOnly = pair;
                    break;
                }
            }
        }
        used[zeroOnly] |= 1L;
        return slot(zeroOnly, 0);
    }

    /**
     * Places one machine on a given pair (pinning): its lowest free block other than 0, block 0 last. A pin is
     * obeyed even when that means block 0 here while another pair of the app has a free non-zero block.
     *
     * @param pair the pair index.
     * @return the slot, or {@link #NONE} when the pair is full or drained.
     */
    public int placeOn(final int pair)
    {
        checkPair(pair);
        if (drained[pair] || (~used[pair] & allMask) == 0)
        {
            return NONE;
        }
        return take(pair);
    }

    /**
     * Takes an exact (pair, block), as a restart does to put every machine back where it was. A drained pair
     * is allowed: drain stops new placements, not the machines that already held their blocks.
     *
     * @param pair  the pair index.
     * @param block the block index.
     * @return the slot, or {@link #NONE} when that block is already held or out of range.
     */
    public int assign(final int pair, final int block)
    {
        checkPair(pair);
        if (block < 0 || block >= blockCount)
        {
            return NONE;
        }
        final long bit = 1L << block;
        if ((used[pair] & bit) != 0)
        {
            return NONE;
        }
        used[pair] |= bit;
        return slot(pair, block);
    }

    /**
     * Gives a slot back.
     *
     * @param slot a slot returned by {@link #place}, {@link #placeOn} or {@link #assign}.
     * @throws IllegalStateException if the slot is not held (a double release is a bug in the caller).
     */
    public void release(final int slot)
    {
        final int pair = pairOf(slot);
        final long bit = 1L << blockOf(slot);
        if (pair >= pairLimit || pairApp[pair] == NONE || (used[pair] & bit) == 0)
        {
            throw new IllegalStateException("slot is not held: pair " + pair + " block " + blockOf(slot));
        }
        used[pair] &= ~bit;
    }

    /**
     * Whether a block of a pair is held.
     *
     * @param pair  the pair index.
     * @param block the block index.
     * @return true if held.
     */
    public boolean isUsed(final int pair, final int block)
    {
        checkPair(pair);
        return block >= 0 && block < blockCount && (used[pair] & (1L << block)) != 0;
    }

    /**
     * The held-block bits of a pair (bit b: block b held).
     *
     * @param pair the pair index.
     * @return the bits.
     */
    public long usedBits(final int pair)
    {
        checkPair(pair);
        return used[pair];
    }

    /**
     * Held slots of a pair.
     *
     * @param pair the pair index.
     * @return the count.
     */
    public int usedSlots(final int pair)
    {
        checkPair(pair);
        return Long.bitCount(used[pair]);
    }

    /**
     * Free slots of a pair, drained or not.
     *
     * @param pair the pair index.
     * @return the count.
     */
    public int freeSlots(final int pair)
    {
        checkPair(pair);
        return blockCount - Long.bitCount(used[pair]);
    }

    /**
     * Free slots an app can still be given: the free slots of its non-drained pairs.
     *
     * @param app the app index.
     * @return the count.
     */
    public int freeSlotsOfApp(final int app)
    {
        if (app < 0 || app >= appPairCount.length)
        {
            return 0;
        }
        final int[] pairs = appPairs[app];
        int free = 0;
        for (int i = 0, count = appPairCount[app]; i < count; i++)
        {
            final int pair = pairs[i];
            if (!drained[pair])
            {
                free += blockCount - Long.bitCount(used[pair]);
            }
        }
        return free;
    }

    /**
     * How many pairs an app has, drained included.
     *
     * @param app the app index.
     * @return the count.
     */
    public int pairCount(final int app)
    {
        return app < 0 || app >= appPairCount.length ? 0 : appPairCount[app];
    }

    /**
     * The app that owns a pair.
     *
     * @param pair the pair index.
     * @return the app index, or {@link #NONE} if the index is not a live pair.
     */
    public int appOf(final int pair)
    {
        return pair < 0 || pair >= pairLimit ? NONE : pairApp[pair];
    }

    /**
     * The tie-break generator's state, for snapshots.
     *
     * @return the state.
     */
    public long randomState()
    {
        return random.state();
    }

    private int take(final int pair)
    {
        final long u = used[pair];
        final long freeNonZero = ~u & nonZeroMask;
        final long bit = freeNonZero != 0 ? Long.lowestOneBit(freeNonZero) : ~u & 1L;
        used[pair] = u | bit;
        return slot(pair, Long.numberOfTrailingZeros(bit));
    }

    private int checkPair(final int pair)
    {
        if (pair < 0 || pair >= pairLimit || pairApp[pair] == NONE)
        {
            throw new IllegalArgumentException("no such pair index: " + pair);
        }
        return pairApp[pair];
    }

    private int newPairIndex()
    {
        if (pairLimit == used.length)
        {
            final int capacity = used.length * 2;
            used = Arrays.copyOf(used, capacity);
            drained = Arrays.copyOf(drained, capacity);
            final int[] apps = filled(capacity);
            System.arraycopy(pairApp, 0, apps, 0, pairLimit);
            pairApp = apps;
            pairKey = Arrays.copyOf(pairKey, capacity);
        }
        if (pairLimit > (Integer.MAX_VALUE >>> BLOCK_BITS))
        {
            throw new IllegalStateException("too many pairs");
        }
        return pairLimit++;
    }

    private void ensureApp(final int app)
    {
        if (app >= appPairCount.length)
        {
            int capacity = appPairCount.length;
            while (capacity <= app)
            {
                capacity *= 2;
            }
            final int oldLength = appPairs.length;
            appPairs = Arrays.copyOf(appPairs, capacity);
            Arrays.fill(appPairs, oldLength, capacity, NO_PAIRS);
            appPairCount = Arrays.copyOf(appPairCount, capacity);
        }
    }

    private static int[] filled(final int length)
    {
        final int[] array = new int[length];
        Arrays.fill(array, NONE);
        return array;
    }
}
