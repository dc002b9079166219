package dev.egressd.core.alloc;

import dev.egressd.core.alloc.Outcome.Refusal;

import java.util.Objects;
import java.util.function.Function;

/**
 * Request text turned into a typed value by {@link RequestText}, or the refusal that names the field at fault.
 * A caller either chains the value into an allocator operation ({@link #then}), so a bad field is answered like
 * any other refusal, or turns the refusal into its own error ({@link #orElseThrow}).
 *
 * @param <T> the value's type.
 */
public sealed interface Parsed<T> permits Parsed.Value, Parsed.Refused
{
    /**
     * The text was good.
     *
     * @param value the typed value; null only for an optional field that was absent.
     * @param <T>   the value's type.
     */
    record Value<T>(T value) implements Parsed<T>
    {
    }

    /**
     * The text was refused.
     *
     * @param refusal the refusal, naming the field and the text.
     * @param <T>     the type the value would have had.
     */
    record Refused<T>(Refusal refusal) implements Parsed<T>
    {
        /**
         * Checks the refusal is there.
         *
         * @param refusal the refusal.
         */
        public Refused
        {
            Objects.requireNonNull(refusal, "refusal");
        }
    }

    /**
     * Whether the text was good.
     *
     * @return true for {@link Value}.
     */
    default boolean ok()
    {
        return this instanceof Value;
    }

    /**
     * Runs an operation on the value, or answers the refusal without running it.
     *
     * @param operation what to do with the value (an allocator call).
     * @return the refusal, or the operation's outcome.
     */
    default Outcome then(final Function<? super T, ? extends Outcome> operation)
    {
        if (this instanceof Refused<T> refused)
        {
            return refused.refusal();
        }
        return operation.apply(((Value<T>)this).value());
    }

    /**
     * Parses on from the value: the first refusal wins.
     *
     * @param next the next step.
     * @param <U>  the next value's type.
     * @return the refusal, or the next step's result.
     */
    default <U> Parsed<U> flatMap(final Function<? super T, Parsed<U>> next)
    {
        if (this instanceof Refused<T> refused)
        {
            return new Refused<>(refused.refusal());
        }
        return next.apply(((Value<T>)this).value());
    }

    /**
     * The value, or the refusal turned into the caller's exception.
     *
     * @param error makes the exception from the refusal.
     * @param <X>   the exception's type.
     * @return the value.
     * @throws X if the text was refused.
     */
    default <X extends Exception> T orElseThrow(final Function<? super Refusal, X> error) throws X
    {
        if (this instanceof Refused<T> refused)
        {
            throw error.apply(refused.refusal());
        }
        return ((Value<T>)this).value();
    }
}
