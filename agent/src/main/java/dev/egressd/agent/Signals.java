package dev.egressd.agent;

/** SIGHUP handling through the JDK's signal hook (jdk.unsupported's sun.misc.Signal). */
final class Signals
{
    private Signals()
    {
    }

    /**
     * Runs an action on every SIGHUP.
     *
     * @param action the action (run on the JVM's signal thread).
     */
    @SuppressWarnings("sunapi")
    static void onHangUp(final Runnable action)
    {
        sun.misc.Signal.handle(new sun.misc.Signal("HUP"), signal -> action.run());
    }
}
