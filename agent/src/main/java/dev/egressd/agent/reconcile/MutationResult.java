package dev.egressd.agent.reconcile;

import dev.egressd.core.alloc.Outcome;

import java.util.List;

/** How the control loop answered a mutation: done, refused, or unavailable; in the last two nothing changed. */
public sealed interface MutationResult
{
    /**
     * Done: the kernel holds the change and the state is on disk.
     *
     * @param changed the ids of machines whose egress changed.
     * @param view     what the mutation's view function returned, built in the same loop task right after the
     *                 change (so no other mutation runs in between), or null when none was given or it failed.
     * @param revision the region revision the mutation's own writes to the region ledger reached (a claim, a
     *                 handover, a host's quarantine): what the routers must apply before its steering is confirmed;
     *                 0 when it wrote none (or with the local ledger).
     */
    record Ok(List<String> changed, Object view, long revision) implements MutationResult
    {
        /**
         * Done, with a view and no region write.
         *
         * @param changed the ids of machines whose egress changed.
         * @param view    the view, or null.
         */
        public Ok(final List<String> changed, final Object view)
        {
            this(changed, view, 0);
        }

        /**
         * Done, without a view.
         *
         * @param changed the ids of machines whose egress changed.
         */
        public Ok(final List<String> changed)
        {
            this(changed, null, 0);
        }
    }

    /**
     * Refused by the allocator: nothing changed.
     *
     * @param refusal the refusal.
     */
    record Refused(Outcome.Refusal refusal) implements MutationResult
    {
    }

    /**
     * The kernel or the disk failed: nothing changed.
     *
     * @param message why.
     */
    record Unavailable(String message) implements MutationResult
    {
    }

    /**
     * The region ledger (etcd) could not be reached within its deadline: nothing changed.
     *
     * @param message why.
     */
    record RegionUnavailable(String message) implements MutationResult
    {
    }

    /**
     * The state file could not be written (a full, read-only or unwritable state directory): the change was
     * undone, in the allocator and in the kernel, so nothing changed.
     *
     * @param message the file and the system's reason, e.g. {@code ".../state.json.tmp: No space left on device"}.
     */
    record StateUnwritable(String message) implements MutationResult
    {
    }
}
