package dev.egressd.agent.conntrack;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Scope;

/**
 * A machine as conntrack knows it: built by {@link MachineRegistry} from the allocator's view, then read by the
 * ledger feed (events, queries) and by flow hygiene (is it still static, which egress does it use now).
 *
 * @param id        the machine id.
 * @param app       its app.
 * @param handle    its slot in the ledger, stable while the machine exists, reused after it is deleted.
 * @param guest4    its IPv4 guest address, or null.
 * @param guest6    its IPv6 guest address, or null.
 * @param scope     where it leaves from.
 * @param egress4   its IPv4 egress address, or null (host, pending).
 * @param egress6   its IPv6 egress address, or null.
 * @param firstPort the first port of its block (1 when it has none: any port is right).
 * @param lastPort  the last port of its block (65535 when it has none).
 */
record TrackedMachine(String id, String app, int handle, Ipv4Address guest4, Ipv6Address guest6, Scope scope,
    Ipv4Address egress4, Ipv6Address egress6, int firstPort, int lastPort)
{
    /**
     * Whether a scope leaves from a static address (an app slot or a machine-scoped pair), which must never be the
     * host's (docs/design.md, invariant 3).
     *
     * @param scope the scope.
     * @return true for app and machine scope.
     */
    static boolean isStatic(final Scope scope)
    {
        return scope == Scope.APP || scope == Scope.MACHINE;
    }

    /**
     * Whether this machine has any guest address (a deletion by guest address has something to match).
     *
     * @return true if it has an IPv4 or an IPv6 guest address.
     */
    boolean hasGuest()
    {
        return guest4 != null || guest6 != null;
    }
}
