package dev.egressd.core.model;

/**
 * What a host is: its region, how ports are cut into blocks, and the per-destination connection cap.
 *
 * @param region         the host's region, e.g. {@code ord}; every pair held here belongs to it.
 * @param layout         the block layout of every app-scoped pair.
 * @param destinationCap the most concurrent connections one machine may hold to one destination IP.
 * @param pairAddressDevice where the app-scoped pairs' addresses go (machine-scoped pairs are always on the
 *                       uplink: they are this host's alone, docs/region.md "Addresses on lo").
 */
public record HostSettings(String region, BlockLayout layout, int destinationCap, AddressDevice pairAddressDevice)
{
    /** The production destination cap. */
    public static final int DEFAULT_DESTINATION_CAP = 1024;

    /**
     * Validates the settings.
     *
     * @param region         the region.
     * @param layout         the block layout.
     * @param destinationCap the destination cap.
     * @param pairAddressDevice where the app-scoped pairs' addresses go.
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
        if (pairAddressDevice == null)
        {
            throw new IllegalArgumentException("pairAddressDevice must be given");
        }
    }

    /**
     * Settings with the pair addresses on the uplink (single-host mode).
     *
     * @param region         the region.
     * @param layout         the block layout.
     * @param destinationCap the destination cap.
     */
    public HostSettings(final String region, final BlockLayout layout, final int destinationCap)
    {
        this(region, layout, destinationCap, AddressDevice.UPLINK);
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
