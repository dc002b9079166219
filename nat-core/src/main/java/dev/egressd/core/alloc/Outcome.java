package dev.egressd.core.alloc;

import java.util.List;

/**
 * The typed result of every {@link EgressAllocator} operation: either it was done, or it was refused and
 * nothing changed (DESIGN invariant 8).
 */
public sealed interface Outcome permits Outcome.Done, Outcome.Refusal
{
    /**
     * Whether the operation was done.
     *
     * @return true for {@link Done}.
     */
    boolean ok();

    /**
     * The operation was done (or was already true: repeating an identical request changes nothing).
     *
     * @param changed ids of the machines whose egress (scope, pair, block) or kernel-relevant facts (guest
     *                addresses, interface, existence) changed, in the order they changed; empty when nothing did.
     */
    record Done(List<String> changed) implements Outcome
    {
        /** No change at all. */
        public static final Done NOTHING = new Done(List.of());

        /**
         * Copies the list.
         *
         * @param changed the changed machine ids.
         */
        public Done
        {
            changed = List.copyOf(changed);
        }

        @Override
        public boolean ok()
        {
            return true;
        }
    }

    /**
     * The operation was refused; nothing changed.
     *
     * @param code    what was wrong, for programs.
     * @param field   the request field at fault, e.g. {@code "ipv4"}, {@code "pin"}, {@code "machine"}.
     * @param message a sentence for a person, naming the field and the value.
     */
    record Refusal(Reason code, String field, String message) implements Outcome
    {
        @Override
        public boolean ok()
        {
            return false;
        }
    }

    /** Why an operation was refused. */
    enum Reason
    {
        /** A malformed id, name or address, or a value out of range. */
        INVALID,
        /** The app is not known. */
        UNKNOWN_APP,
        /** The machine is not known. */
        UNKNOWN_MACHINE,
        /** The pair is not one of the app's pairs. */
        UNKNOWN_PAIR,
        /** The machine has no machine-scoped pair to release or promote. */
        NO_MACHINE_SCOPED_PAIR,
        /** The region is not this host's region. */
        WRONG_REGION,
        /** An IPv6 address in an IPv4 field, or the reverse. */
        WRONG_FAMILY,
        /** The address is already an egress address or another machine's guest address. */
        ADDRESS_IN_USE,
        /** Another machine already uses the guest interface. */
        DUPLICATE_INTERFACE,
        /** The pinned pair has no free slot. */
        PAIR_FULL,
        /** The pinned pair is drained: it takes no new machine. */
        PAIR_DRAINED,
        /** The pin names a pair of another app. */
        PIN_FOREIGN_PAIR,
        /** The exact (pair, block) asked for on restore is already held; or, on promote, another host holds it. */
        SLOT_TAKEN,
        /** A restore names a machine that already exists with another placement. */
        ALREADY_EXISTS,
        /** The region's owner of record of the slots could not be asked (region mode); nothing changed. */
        LEDGER_UNAVAILABLE
    }
}
