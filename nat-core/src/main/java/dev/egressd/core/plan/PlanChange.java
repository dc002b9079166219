package dev.egressd.core.plan;

/**
 * One element change between two plans.
 *
 * @param op       what to do.
 * @param element  the element to add, the element to remove, or (REPLACE) the new element.
 * @param previous for REPLACE, the element being replaced (same key); otherwise null.
 */
public record PlanChange(Op op, PlanElement element, PlanElement previous)
{
    /** The three kinds of change. */
    public enum Op
    {
        /** The element is missing: add it. */
        ADD,
        /** The key is present with other data: change it in place (delete + add in one transaction). */
        REPLACE,
        /** The element is no longer wanted: remove it. */
        REMOVE
    }

    /**
     * An addition.
     *
     * @param element the element.
     * @return the change.
     */
    public static PlanChange add(final PlanElement element)
    {
        return new PlanChange(Op.ADD, element, null);
    }

    /**
     * A removal.
     *
     * @param element the element.
     * @return the change.
     */
    public static PlanChange remove(final PlanElement element)
    {
        return new PlanChange(Op.REMOVE, element, null);
    }

    /**
     * A replacement of an element by another with the same key.
     *
     * @param previous the element now held.
     * @param element  the element wanted.
     * @return the change.
     */
    public static PlanChange replace(final PlanElement previous, final PlanElement element)
    {
        return new PlanChange(Op.REPLACE, element, previous);
    }

    @Override
    public String toString()
    {
        return op == Op.REPLACE ? "replace " + previous + " -> " + element : op.name().toLowerCase() + " " + element;
    }
}
