package dev.egressd.core.model;

import java.util.Locale;

/**
 * Where a host puts an egress pair's addresses (docs/region.md, "Addresses on lo").
 */
public enum AddressDevice
{
    /** On the uplink: the host answers ARP/ND for them (single-host mode, and every machine-scoped pair). */
    UPLINK,
    /**
     * On {@code lo}: the host sends from them but does not answer ARP/ND for them on the uplink (with
     * {@code arp_ignore=1}); for the app pairs of region mode, which several hosts hold at once.
     */
    LO;

    /**
     * The setting's spelling.
     *
     * @return {@code uplink} or {@code lo}.
     */
    public String wireName()
    {
        return name().toLowerCase(Locale.ROOT);
    }

    /**
     * A setting's value.
     *
     * @param text {@code uplink} or {@code lo}.
     * @return the device.
     * @throws IllegalArgumentException if it is neither.
     */
    public static AddressDevice parse(final String text)
    {
        for (final AddressDevice d : values())
        {
            if (d.wireName().equals(text))
            {
                return d;
            }
        }
        throw new IllegalArgumentException("must be uplink or lo, got " + text);
    }
}
