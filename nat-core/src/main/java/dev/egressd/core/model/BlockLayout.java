package dev.egressd.core.model;

/**
 * How the source ports of one egress IPv4 are cut into blocks, one block per slot.
 *
 * <p>Block b covers ports {@code b*blockSize .. b*blockSize + blockSize - 1}, except block 0, which starts
 * at port 1 (port 0 is not a usable source port) and is therefore placed last.
 *
 * @param blockCount blocks per egress address, 1..64 (64 in production: one {@code long} of slot bits).
 * @param blockSize  ports per block, a power of two, 2..1024 (1024 in production).
 */
public record BlockLayout(int blockCount, int blockSize)
{
    /** The production layout: 64 blocks of 1024 ports, the whole port space of one address. */
    public static final BlockLayout STANDARD = new BlockLayout(64, 1024);

    /** The lowest and highest port a machine-scoped IP may use: the whole range. */
    public static final int ANY_FIRST_PORT = 1;

    /** The highest port number. */
    public static final int ANY_LAST_PORT = 65535;

    /**
     * Validates the layout.
     *
     * @param blockCount blocks per address.
     * @param blockSize  ports per block.
     */
    public BlockLayout
    {
        if (blockCount < 1 || blockCount > 64)
        {
            throw new IllegalArgumentException("blockCount must be 1..64, got " + blockCount);
        }
        if (blockSize < 2 || blockSize > 1024 || Integer.bitCount(blockSize) != 1)
        {
            throw new IllegalArgumentException("blockSize must be a power of two in 2..1024, got " + blockSize);
        }
        if ((long)blockCount * blockSize > 65536)
        {
            throw new IllegalArgumentException("blockCount * blockSize exceeds the 65536 ports of an address");
        }
    }

    /**
     * The first port of a block.
     *
     * @param block the block index.
     * @return its first port (1 for block 0).
     */
    public int firstPort(final int block)
    {
        checkBlock(block);
        return block == 0 ? 1 : block * blockSize;
    }

    /**
     * The last port of a block.
     *
     * @param block the block index.
     * @return its last port.
     */
    public int lastPort(final int block)
    {
        checkBlock(block);
        return block * blockSize + blockSize - 1;
    }

    /**
     * The block a port belongs to, or -1 when it lies in none (port 0, or beyond the last block).
     *
     * @param port a port number.
     * @return the block index or -1.
     */
    public int blockOf(final int port)
    {
        if (port <= 0)
        {
            return -1;
        }
        final int block = port / blockSize;
        return block < blockCount ? block : -1;
    }

    private void checkBlock(final int block)
    {
        if (block < 0 || block >= blockCount)
        {
            throw new IllegalArgumentException("block must be 0.." + (blockCount - 1) + ", got " + block);
        }
    }
}
