package dev.egressd.core.model;

/**
 * What a host is: its region, how ports are cut into blocks, and the per-destination connection cap.
 *
 * @param region         the host's region, e.g. {@code ord}; every pair held here belongs to it.
 * @param layout         the block layout of every app-scoped pair.
 * @param destinationCap the most concurrent connections one machine may hold to one destination IP.
 */
public record HostSettings(String region, BlockLayout layout, int destinationCap)
{
    /** The production destination cap. */
    public static final int DEFAULT_DESTINATION_CAP = 1024;

    /**
     * Validates the settings.
     *
     * @param region         the region.
     * @param layout         the block layout.
     * @param destinationCap the destination cap.
     */
    public HostSettings
    {
        if (region == null || !region.matches("[a-z0-9][a-z0-9-]{0,62}"))
        {
            throw new IllegalArgumentException("region must be 1..63 of [a-z0-9-], got " + region);
        }
        if (layout == null)
        {
            throw new IllegalArgumentException("layout must be given");
        }
        if (destinationCap < 1 || destinationCap > 65535)
        {
            throw new IllegalArgumentException("destinationCap must be 1..65535, got " + destinationCap);
        }
    }

    /**
     * Production settings for a region.
     *
     * @param region the region.
     * @return 64 blocks of 1024 ports, cap 1024.
     */
    public static HostSettings of(final String region)
    {
        return new HostSettings(region, BlockLayout.STANDARD, DEFAULT_DESTINATION_CAP);
    }
}
