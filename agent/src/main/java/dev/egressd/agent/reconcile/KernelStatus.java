package dev.egressd.agent.reconcile;

import java.util.Locale;

/** The kernel's status as {@code GET /v1/health} shows it. */
public enum KernelStatus
{
    /** Not read yet. */
    STARTING,
    /** The kernel holds the desired plan. */
    IN_SYNC,
    /** The last reconcile found and repaired drift. */
    REPAIRED_DRIFT,
    /** The kernel could not be read or programmed; retrying with back-off. */
    UNAVAILABLE;

    /**
     * The API's name.
     *
     * @return e.g. {@code in_sync}.
     */
    public String wireName()
    {
        return name().toLowerCase(Locale.ROOT);
    }
}
