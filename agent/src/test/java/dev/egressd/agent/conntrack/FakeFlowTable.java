package dev.egressd.agent.conntrack;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent.Type;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvents;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/** A conntrack table in memory: what hygiene dumps, and the ids it deleted. Every entry goes to {@link #DST}. */
final class FakeFlowTable implements FlowHygiene.FlowTable
{
    static final int DST = Ipv4Address.parse("198.51.100.10").bits();
    static final Ipv6Address DST6 = Ipv6Address.parse("2001:db8:100::10");

    final List<ConntrackEvent> entries = new ArrayList<>();
    final List<Integer> deleted = new ArrayList<>();
    int dumps;
    /** Dumps still to fail, as a kernel that refuses the request would. */
    int failingDumps;

    void add4(final int id, final int status, final int guest, final int translated, final int port)
    {
        entries.add(new ConntrackEvent().fillIpv4(Type.EXISTING, id, 6, status, 3, guest, 40000 + id, DST, 80,
            translated, port));
    }

    void add6(final int id, final int status, final Ipv6Address guest, final Ipv6Address translated,
        final int port)
    {
        entries.add(new ConntrackEvent().fillIpv6(Type.EXISTING, id, 6, status, 3, guest.high(), guest.low(),
            DST6.high(), DST6.low(), translated.high(), translated.low(), port));
    }

    @Override
    public void dump(final ConntrackEvents.Listener listener) throws IOException
    {
        dumps++;
        if (failingDumps > 0)
        {
            failingDumps--;
            throw new IOException("dump refused (test)");
        }
        final ConntrackEvent reused = new ConntrackEvent();
        for (final ConntrackEvent e : entries)
        {
            final ConntrackEvent c = e.copy();
            listener.onEvent(c.isIpv4()
                ? reused.fillIpv4(Type.EXISTING, c.id(), c.l4proto(), c.status(), c.tcpState(), c.origSrcV4(),
                    c.origSrcPort(), c.origDstV4(), c.origDstPort(), c.replyDstV4(), c.replyDstPort())
                : reused.fillIpv6(Type.EXISTING, c.id(), c.l4proto(), c.status(), c.tcpState(), c.origSrcHigh(),
                    c.origSrcLow(), c.origDstHigh(), c.origDstLow(), c.replyDstHigh(), c.replyDstLow(),
                    c.replyDstPort()));
        }
    }

    @Override
    public boolean delete(final ConntrackEvent entry)
    {
        final boolean removed = entries.removeIf(e -> e.id() == entry.id());
        if (removed)
        {
            deleted.add(entry.id());
        }
        return removed;
    }
}
