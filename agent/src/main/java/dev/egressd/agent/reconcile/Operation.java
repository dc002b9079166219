package dev.egressd.agent.reconcile;

/**
 * What a mutation does, named for the metrics ({@code egressd.changes}' {@code operation} tag). A fixed list, so
 * the tag stays bounded whatever ids the requests carry; the ids go only into the log text that travels with the
 * mutation.
 */
public enum Operation
{
    /** {@code PUT /v1/apps/{app}}. */
    PUT_APP("put_app"),
    /** {@code POST /v1/apps/{app}/pairs}. */
    ADD_PAIR("add_pair"),
    /** {@code DELETE /v1/apps/{app}/pairs/{ipv4}}. */
    RELEASE_PAIR("release_pair"),
    /** {@code PUT /v1/apps/{app}/pairs/{ipv4}/drain}. */
    DRAIN_PAIR("drain_pair"),
    /** {@code DELETE /v1/apps/{app}/pairs/{ipv4}/drain}. */
    UNDRAIN_PAIR("undrain_pair"),
    /** {@code PUT /v1/machines/{id}}. */
    PUT_MACHINE("put_machine"),
    /** {@code DELETE /v1/machines/{id}}. */
    DELETE_MACHINE("delete_machine"),
    /** {@code PUT /v1/machines/{id}/egress-ip}. */
    SET_MACHINE_PAIR("set_machine_pair"),
    /** {@code DELETE /v1/machines/{id}/egress-ip}. */
    RELEASE_MACHINE_PAIR("release_machine_pair"),
    /** {@code POST /v1/machines/{id}/egress-ip/promote}. */
    PROMOTE_MACHINE_PAIR("promote_machine_pair"),
    /** {@code DELETE /v1/recovered}. */
    FORGET_RECOVERED("forget_recovered"),
    /** {@code DELETE /v1/hosts/{id}} (region mode). */
    DELETE_HOST("delete_host"),
    /** Applying the region ledger's changes, or retrying what waits on it (region mode). */
    REGION_SYNC("region_sync"),
    /** Anything that is not an API request (tools, tests). */
    OTHER("other");

    private final String label;

    Operation(final String label)
    {
        this.label = label;
    }

    /**
     * The metric tag's value; spelled out rather than derived from the constant's name, so renaming a constant
     * cannot rename a published series.
     *
     * @return e.g. {@code put_machine}.
     */
    public String label()
    {
        return label;
    }
}
