package dev.egressd.core.alloc;

/**
 * A tiny seeded pseudo-random generator (Steele, Lea and Flood's SplitMix64) for tie-breaks.
 *
 * <p>Why not {@link java.util.Random}: it is synchronised (an atomic CAS per call) and a new instance per call
 * would allocate. Why not {@link java.util.SplittableRandom}: it is fine too, but its {@code nextInt(bound)}
 * draw sequence is a JDK detail; the reference model in the tests must draw exactly the same numbers at the
 * same moments so that the fast allocator and the model make the same choices, so both use this class.
 * Not for anything security related.
 */
public final class SplitMix64
{
    private long state;

    /**
     * Creates a generator.
     *
     * @param seed any value; the same seed gives the same sequence.
     */
    public SplitMix64(final long seed)
    {
        this.state = seed;
    }

    /**
     * The next 64 random bits.
     *
     * @return a random long.
     */
    public long nextLong()
    {
        long z = (state += 0x9E3779B97F4A7C15L);
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /**
     * A random int in {@code 0 .. bound-1}, by Lemire's multiply-shift (the bias is below 2^-32 per draw for
     * the bounds we use, at most the number of pairs of one app, which does not matter for a tie-break).
     *
     * @param bound the exclusive upper bound, at least 1.
     * @return a random int in range.
     */
    public int nextInt(final int bound)
    {
        return (int)(((nextLong() >>> 32) * bound) >>> 32);
    }

    /**
     * The internal state, so a snapshot can show that a refused operation drew no random numbers.
     *
     * @return the state.
     */
    public long state()
    {
        return state;
    }
}
