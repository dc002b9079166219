package dev.egressd.core.ledger;

/**
 * A connection whose translated source port lay outside its machine's block when it opened (DESIGN invariant
 * 2), kept for the log line that explains the violations counter.
 *
 * @param connId    the conntrack id (CTA_ID).
 * @param machine   the machine handle.
 * @param high      the destination key, high half.
 * @param low       the destination key, low half.
 * @param port      the translated source port.
 * @param firstPort the first port of the machine's range at that time.
 * @param lastPort  the last port of the machine's range at that time.
 */
public record Violation(long connId, int machine, long high, long low, int port, int firstPort, int lastPort)
{
    @Override
    public String toString()
    {
        return "conn " + connId + " machine " + machine + " -> " + LedgerKeys.toText(high, low) +
            " translated port " + port + " outside " + firstPort + ".." + lastPort;
    }
}
