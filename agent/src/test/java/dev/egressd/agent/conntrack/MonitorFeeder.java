package dev.egressd.agent.conntrack;

import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;

/** Test support for other packages: hands a hand-made event to a monitor's event path (call on its thread). */
public final class MonitorFeeder
{
    private MonitorFeeder()
    {
    }

    /**
     * Feeds one event.
     *
     * @param monitor the monitor.
     * @param event   the event.
     */
    public static void feed(final ConntrackMonitor monitor, final ConntrackEvent event)
    {
        monitor.onEvent(event);
    }
}
