package dev.egressd.core.plan;

import dev.egressd.core.model.AddressDevice;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

/**
 * One fact the kernel must hold for egressd: an element of one of its sets or maps, or an address on the
 * uplink. Elements are data; rendering them to nft syntax or netlink messages belongs to the agent.
 *
 * <p>Two elements with the same {@link #key()} but different data are one element changed in place
 * (a remap), which the diff reports as a {@link PlanChange.Op#REPLACE}.
 */
public sealed interface PlanElement
{
    /**
     * What identifies the element in its set or map: the element itself for sets, the key for maps.
     *
     * @return an object with value equality.
     */
    Object key();

    /**
     * A short stable kind name, used to order and print elements.
     *
     * @return e.g. {@code snat4}.
     */
    String kind();

    /**
     * A guest IPv4 address of the static class: it must leave from a static address or not at all.
     *
     * @param guest the guest address.
     */
    record Static4(Ipv4Address guest) implements PlanElement
    {
        @Override
        public Object key()
        {
            return this;
        }

        @Override
        public String kind()
        {
            return "static4";
        }
    }

    /**
     * A guest IPv6 address of the static class.
     *
     * @param guest the guest address.
     */
    record Static6(Ipv6Address guest) implements PlanElement
    {
        @Override
        public Object key()
        {
            return this;
        }

        @Override
        public String kind()
        {
            return "static6";
        }
    }

    /**
     * An IPv4 source address a guest interface may use (anti-spoofing, DESIGN invariant 4).
     *
     * @param iface   the guest interface, e.g. {@code tap-m1}.
     * @param address the guest's own address.
     */
    record Guest4(String iface, Ipv4Address address) implements PlanElement
    {
        @Override
        public Object key()
        {
            return this;
        }

        @Override
        public String kind()
        {
            return "guests4";
        }
    }

    /**
     * An IPv6 source address a guest interface may use.
     *
     * @param iface   the guest interface.
     * @param address the guest's own address.
     */
    record Guest6(String iface, Ipv6Address address) implements PlanElement
    {
        @Override
        public Object key()
        {
            return this;
        }

        @Override
        public String kind()
        {
            return "guests6";
        }
    }

    /**
     * IPv4 source NAT of one guest: its egress address and the source ports it may use.
     *
     * @param guest     the guest address (the map key).
     * @param egress    the static egress address.
     * @param firstPort the first source port.
     * @param lastPort  the last source port.
     */
    record Snat4(Ipv4Address guest, Ipv4Address egress, int firstPort, int lastPort) implements PlanElement
    {
        @Override
        public Object key()
        {
            return guest;
        }

        @Override
        public String kind()
        {
            return "snat4";
        }
    }

    /**
     * IPv6 source NAT of one guest (a per-guest chain in nft 1.0.6, docs/design.md, pitfall 1).
     *
     * @param guest     the guest address (the map key).
     * @param egress    the static egress address.
     * @param firstPort the first source port.
     * @param lastPort  the last source port.
     */
    record Snat6(Ipv6Address guest, Ipv6Address egress, int firstPort, int lastPort) implements PlanElement
    {
        @Override
        public Object key()
        {
            return guest;
        }

        @Override
        public String kind()
        {
            return "snat6";
        }
    }

    /**
     * A static IPv4 egress address that must be on the uplink, or on {@code lo} (a /32). The device is part of the
     * element: an address egressd holds on the other device is another element, so moving the pair addresses
     * (a changed {@code pair-address-device}) is an add on the new device and a drain off the old one.
     *
     * @param address the egress address.
     * @param device  where it goes.
     */
    record Uplink4(Ipv4Address address, AddressDevice device) implements PlanElement
    {
        /** Checks the device. */
        public Uplink4
        {
            if (device == null)
            {
                throw new IllegalArgumentException("an egress address needs a device");
            }
        }

        /**
         * An address on the uplink.
         *
         * @param address the egress address.
         */
        public Uplink4(final Ipv4Address address)
        {
            this(address, AddressDevice.UPLINK);
        }

        @Override
        public Object key()
        {
            return this;
        }

        @Override
        public String kind()
        {
            return "uplink4";
        }
    }

    /**
     * A static IPv6 egress address that must be on the uplink, or on {@code lo} (a /128, deprecated, no DAD); the
     * device is part of the element, as for {@link Uplink4}.
     *
     * @param address the egress address.
     * @param device  where it goes.
     */
    record Uplink6(Ipv6Address address, AddressDevice device) implements PlanElement
    {
        /** Checks the device. */
        public Uplink6
        {
            if (device == null)
            {
                throw new IllegalArgumentException("an egress address needs a device");
            }
        }

        /**
         * An address on the uplink.
         *
         * @param address the egress address.
         */
        public Uplink6(final Ipv6Address address)
        {
            this(address, AddressDevice.UPLINK);
        }

        @Override
        public Object key()
        {
            return this;
        }

        @Override
        public String kind()
        {
            return "uplink6";
        }
    }
}
