package dev.egressd.core.model;

/**
 * A guest on this host, as the orchestrator describes it.
 *
 * @param id        the machine id.
 * @param app       the app (tenant) it belongs to.
 * @param iface     its point-to-point guest interface on the host, e.g. {@code tap-m1}.
 * @param ipv4      its guest IPv4 address, or null.
 * @param ipv6      its guest IPv6 address, or null.
 * @param pin       the IPv4 of the app pair it must be placed on, or null for any.
 */
public record Machine(String id, String app, String iface, Ipv4Address ipv4, Ipv6Address ipv6, Ipv4Address pin)
{
}
