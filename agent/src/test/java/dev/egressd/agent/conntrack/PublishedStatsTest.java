package dev.egressd.agent.conntrack;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;

import java.util.Map;

import org.junit.jupiter.api.Test;

/** The figures other threads read: the metrics' view and the machine summary, both from the last snapshot. */
class PublishedStatsTest
{
    private static ConntrackSnapshot snapshot(final long resyncs, final Map<String, ConnectionQueries.MachineSummary> m)
    {
        return new ConntrackSnapshot(10, 1, 2, 3, 4, 5, 6, resyncs, 7, 8, 9, 1, 2, 3, 11, m);
    }

    @Test
    void everyFigureComesFromTheLastPublishedSnapshot()
    {
        final PublishedStats stats = new PublishedStats(snapshot(0, Map.of()));
        assertThat(stats.resyncs()).as("no dump yet: never negative").isZero();
        assertThat(stats.busiestCount("m1")).isZero();
        assertThat(stats.summary("m1")).isNull();

        final ConntrackSnapshot next = snapshot(3, Map.of("m1", new ConnectionQueries.MachineSummary(9, 8)));
        stats.publish(next);
        assertThat(stats.snapshot()).isSameAs(next);
        assertThat(stats.destinationCap()).isEqualTo(10);
        assertThat(stats.resyncs()).as("the dump at start is not a repair").isEqualTo(2);
        assertThat(stats.busiestCount("m1")).isEqualTo(8);
        assertThat(stats.busiestCount("m2")).isZero();
        assertThat(stats.summary("m1")).isEqualTo(new ConnectionQueries.MachineSummary(9, 8));
        assertThat(stats.liveConnections()).isEqualTo(9);
        assertThat(stats.machinesAtWarning()).isEqualTo(1);
        assertThat(stats.machinesAtCritical()).isEqualTo(2);
        assertThat(stats.violations()).isEqualTo(11);
        assertThat(stats.events(ConntrackEvent.Type.NEW)).isEqualTo(1);
        assertThat(stats.events(ConntrackEvent.Type.UPDATE)).isEqualTo(2);
        assertThat(stats.events(ConntrackEvent.Type.DESTROY)).isEqualTo(3);
        assertThat(stats.events(ConntrackEvent.Type.EXISTING)).isEqualTo(4);
        assertThat(next.busiestUse("m1")).isEqualTo(0.8);
        assertThat(next.busiestUse("m2")).isZero();
    }
}
