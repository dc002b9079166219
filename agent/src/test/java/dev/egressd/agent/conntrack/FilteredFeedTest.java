package dev.egressd.agent.conntrack;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.conntrack.ctnetlink.ClassicBpf;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent.Type;
import dev.egressd.agent.conntrack.ctnetlink.EventEncoder;
import dev.egressd.agent.conntrack.ctnetlink.EventFilter;
import dev.egressd.agent.conntrack.ctnetlink.GuestPrefixes;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.refusals.RefusalLog;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Scope;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The kernel-side filter changes nothing the ledger knows: two feeds over the same machines, one fed every event of
 * a random churn of flows (guests, addresses inside the cover that are no guest's, other sources; translated or not;
 * TCP state changes; closes, whose DESTROY carries the flow's last TCP state as the kernel's does), the other only
 * the events the filter program keeps, end with the same connections
 * per machine at every step, while the second reads far fewer events.
 */
class FilteredFeedTest
{
    private static final int MACHINES = 300;
    private static final int NAT = NetlinkConstants.IPS_SRC_NAT | NetlinkConstants.IPS_CONFIRMED;
    private static final int DST = Ipv4Address.parse("198.51.100.10").bits();
    private static final int EGRESS = Ipv4Address.parse("203.0.113.10").bits();
    private static final Ipv6Address DST6 = Ipv6Address.parse("2001:db8:100::10");
    private static final Ipv6Address EGRESS6 = Ipv6Address.parse("2001:db8:10::10");

    private record Flow(int id, boolean v6, int source, int proto, int status)
    {
    }

    private static int guest4(final int m)
    {
        return Ipv4Address.parse("10.77." + (m / 250) + "." + (m % 250 + 1)).bits();
    }

    private static Ipv6Address guest6(final int m)
    {
        return Ipv6Address.parse("fd77::" + Integer.toHexString(m + 2));
    }

    @Test
    void theFilteredFeedCountsExactlyWhatTheFullFeedCounts()
    {
        final LedgerFeed all = new LedgerFeed(1024, new RefusalLog(RefusalLog.Format.TEXT, l -> { }, () -> 0L));
        final LedgerFeed filtered = new LedgerFeed(1024, new RefusalLog(RefusalLog.Format.TEXT, l -> { }, () -> 0L));
        final List<TrackedMachine> machines = new ArrayList<>();
        final GuestIndex.Builder b = new GuestIndex.Builder();
        for (int m = 0; m < MACHINES; m++)
        {
            final TrackedMachine t = new TrackedMachine("m" + m, "a", m, new Ipv4Address(guest4(m)), guest6(m), Scope.APP,
                new Ipv4Address(EGRESS), EGRESS6, 1024, 65535);
            machines.add(t);
            b.add4(guest4(m), m).add6(guest6(m).high(), guest6(m).low(), m);
        }
        final GuestIndex index = b.build();
        final MachineRegistry.Update update = new MachineRegistry.Update(index, HeldAddresses.EMPTY, machines, List.of(),
            List.of());
        all.apply(update);
        filtered.apply(update);
        final GuestPrefixes cover = index.cover(16);                   // a coarse cover: it takes in non-guests too
        assertThat(cover.length4()).isLessThan(32);
        assertThat(cover.contains6(Ipv6Address.parse("fd77::131").high(), Ipv6Address.parse("fd77::131").low())).isTrue();
        assertThat(cover.contains4(Ipv4Address.parse("10.77.0.251").bits())).isTrue();   // no guest's
        final ClassicBpf.Program program = EventFilter.program(cover);

        final Random r = new Random(13);
        final List<Flow> live = new ArrayList<>();
        final ConntrackEvent e = new ConntrackEvent();
        final ConntrackEvent parsed = new ConntrackEvent();
        final Map<Integer, Integer> lastState = new HashMap<>();
        int nextId = 1;
        int kept = 0;
        int events = 0;
        for (int step = 0; step < 30_000; step++)
        {
            final int pick = r.nextInt(10);
            final Flow f;
            final Type type;
            int state = 0;
            if (live.isEmpty() || pick < 4)
            {
                final int kind = r.nextInt(10);
                final boolean v6 = r.nextBoolean();
                final int source = kind < 6 ? r.nextInt(MACHINES) : kind < 8 ? -1 - r.nextInt(3) : -100;
                f = new Flow(nextId++, v6, source, r.nextInt(4) == 0 ? 17 : 6, r.nextInt(5) == 0 ? 0x8 : NAT);
                live.add(f);
                type = Type.NEW;
                state = f.proto() == 6 ? 1 : 0;
            }
            else
            {
                final int i = r.nextInt(live.size());
                f = live.get(i);
                if (pick < 8 && f.proto() == 6)
                {
                    type = Type.UPDATE;
                    state = 1 + r.nextInt(9);
                }
                else
                {
                    type = Type.DESTROY;
                    live.remove(i);
                    state = lastState.getOrDefault(f.id(), 0);      // the kernel reports a TCP flow's state in DESTROY
                }
            }
            if (f.proto() == 6 && type != Type.DESTROY)
            {
                lastState.put(f.id(), state);
            }
            fill(e, f, type, state);
            final byte[] message = EventEncoder.encode(e);
            assertThat(EventEncoder.parse(message, parsed)).isTrue();
            all.onEvent(parsed);
            events++;
            if (program.run(message, message.length) != ClassicBpf.DROP)
            {
                filtered.onEvent(parsed);
                kept++;
            }
            if (step % 1000 == 999)
            {
                assertThat(filtered.ledger().liveConnections()).as("step %d", step)
                    .isEqualTo(all.ledger().liveConnections());
                for (int m = 0; m < MACHINES; m++)
                {
                    assertThat(filtered.ledger().machineConnections(m)).as("machine %d at step %d", m, step)
                        .isEqualTo(all.ledger().machineConnections(m));
                }
            }
        }
        assertThat(all.ledger().liveConnections()).isPositive();
        assertThat(kept).as("events kept of %d", events).isLessThan(events * 2 / 3);
    }

    private static void fill(final ConntrackEvent e, final Flow f, final Type type, final int state)
    {
        final int port = 1024 + f.id() % 60000;
        if (!f.v6())
        {
            final int source = f.source() >= 0 ? guest4(f.source())
                : f.source() == -100 ? Ipv4Address.parse("192.0.2.7").bits()
                : Ipv4Address.parse("10.77.0.250").bits() - f.source();   // in the cover, no guest's
            e.fillIpv4(type, f.id(), f.proto(), f.status(), state, source, 40000, DST, 443, EGRESS, port);
        }
        else
        {
            final Ipv6Address source = f.source() >= 0 ? guest6(f.source())
                : f.source() == -100 ? Ipv6Address.parse("2001:db8:1::7")
                : Ipv6Address.parse("fd77::" + Integer.toHexString(MACHINES + 2 - f.source()));
            e.fillIpv6(type, f.id(), f.proto(), f.status(), state, source.high(), source.low(), DST6.high(), DST6.low(),
                EGRESS6.high(), EGRESS6.low(), port);
        }
    }
}
