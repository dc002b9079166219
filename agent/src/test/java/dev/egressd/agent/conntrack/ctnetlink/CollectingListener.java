package dev.egressd.agent.conntrack.ctnetlink;

import java.util.List;

/** A listener for tests that keeps a copy of every event and fails on an overrun (an event lost is a test lost). */
public final class CollectingListener implements ConntrackEvents.Listener
{
    private final List<ConntrackEvent> into;

    /** @param into where the copies go, in the order read. */
    public CollectingListener(final List<ConntrackEvent> into)
    {
        this.into = into;
    }

    @Override
    public void onEvent(final ConntrackEvent event)
    {
        into.add(event.copy());
    }

    @Override
    public void onOverrun()
    {
        throw new AssertionError("events lost: the socket's buffer overran");
    }
}
