package dev.egressd.agent.reconcile;

import java.util.List;
import java.util.Locale;

/**
 * Whether the region's routers steer a placement's block to this host yet (docs/region.md, "Steering"): the answer
 * to a placement (and to a host deletion) says it, after waiting up to {@code router-confirm-ms} for every live
 * router to publish a revision at least the placement's.
 *
 * @param state      the state.
 * @param revision   the region revision the routers had to apply (the claim's, the slot's, the quarantine's); 0
 *                   with {@link State#LOCAL}.
 * @param waitingFor the live routers still behind it when the answer left (empty unless unconfirmed).
 * @param waitNanos  how long the answer waited.
 */
public record Steering(State state, long revision, List<String> waitingFor, long waitNanos)
{
    /** The state of the steering. */
    public enum State
    {
        /** Every live router applied the revision. */
        CONFIRMED,
        /** The deadline passed (or the wait was off) with routers behind: named in {@code waitingFor}. */
        UNCONFIRMED,
        /** No router key exists in the region: nothing to wait for (answered at once). */
        NO_ROUTER,
        /** Nothing for a router to steer: the local ledger, or the machine holds no region slot. */
        LOCAL;

        /** @return the API's spelling ({@code no_router}). */
        public String text()
        {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /** Nothing for a router to steer. */
    public static final Steering NOT_STEERED = new Steering(State.LOCAL, 0, List.of(), 0);

    /** Copies the list. */
    public Steering
    {
        waitingFor = List.copyOf(waitingFor);
    }
}
