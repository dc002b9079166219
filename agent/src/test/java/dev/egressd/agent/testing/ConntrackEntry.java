package dev.egressd.agent.testing;

/**
 * One conntrack entry as {@code conntrack -L} shows it in a lab's host ({@link HostConntrack}).
 *
 * @param proto     {@code tcp}, {@code udp}, {@code icmp} or {@code icmpv6}.
 * @param origSrc   the guest's address.
 * @param origDst   the destination.
 * @param replyDst  the address replies go to: the translated source.
 * @param replyPort the translated source port (reply dport), or the translated ICMP echo id.
 * @param line      the raw line.
 */
public record ConntrackEntry(String proto, String origSrc, String origDst, String replyDst, int replyPort,
    String line)
{
    /**
     * The TCP state as conntrack shows it ({@code ESTABLISHED}, {@code TIME_WAIT}, ...).
     *
     * @return the state, or null for other protocols.
     */
    public String tcpState()
    {
        if (!proto.equals("tcp"))
        {
            return null;
        }
        final String[] tokens = line.trim().split("\\s+");
        return tokens.length > 3 && !tokens[3].contains("=") ? tokens[3] : null;
    }

    /**
     * Whether the source was translated: replies go to another address than the original source.
     *
     * @return true when source-NATed.
     */
    public boolean snat()
    {
        return replyDst != null && !replyDst.equals(origSrc);
    }
}
