package dev.egressd.core.model;

/** Which rule of docs/design.md ("Which address a machine leaves from") decides the address a machine leaves from. */
public enum Scope
{
    /** Rule 1: a legacy machine-scoped pair, any source port. */
    MACHINE,
    /** Rule 2: a slot on one of its app's pairs, ports inside the slot's block. */
    APP,
    /** Rule 3: masqueraded to the host's uplink address (also an app's opted-in fallback). */
    HOST,
    /** Rule 2 applies but no slot can be had: traffic refused (fail-closed). */
    PENDING;

    /** @return the lower-case name used in the API, e.g. {@code "app"}. */
    public String wireName()
    {
        return name().toLowerCase(java.util.Locale.ROOT);
    }
}
