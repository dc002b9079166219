package dev.egressd.core.alloc;

import dev.egressd.core.model.Ipv4Address;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * A {@link SlotLedger} whose answers a test sets: TAKEN on the slots in {@link #taken}, UNAVAILABLE while
 * {@link #unavailable}, CLAIMED otherwise; it records every call as {@code "<pair>/<block> <machine>"}.
 */
final class ScriptedLedger implements SlotLedger
{
    /** Slots ("pair/block") another host holds. */
    final Set<String> taken = new HashSet<>();
    /** Every claim asked, in order. */
    final List<String> claims = new ArrayList<>();
    /** Every release told, in order. */
    final List<String> releases = new ArrayList<>();
    boolean unavailable;

    static String slot(final String pair, final int block)
    {
        return pair + "/" + block;
    }

    @Override
    public Claim claim(final Ipv4Address pair, final int block, final String machineId)
    {
        claims.add(slot(pair.toString(), block) + " " + machineId);
        if (unavailable)
        {
            return Claim.UNAVAILABLE;
        }
        return taken.contains(slot(pair.toString(), block)) ? Claim.TAKEN : Claim.CLAIMED;
    }

    @Override
    public void release(final Ipv4Address pair, final int block, final String machineId)
    {
        releases.add(slot(pair.toString(), block) + " " + machineId);
    }
}
