package dev.egressd.agent.kernel.nft.netlink;

import dev.egressd.agent.natives.LibC;
import dev.egressd.agent.natives.NativeException;
import dev.egressd.agent.natives.Natives;

/**
 * The kernel refused an nf_tables batch: the whole transaction was aborted and nothing changed. Names the
 * first refused change (its index in the batch and what it was) and the kernel's errno.
 */
public final class NftRefusedException extends NativeException
{
    private static final long serialVersionUID = 1L;

    private final int index;
    private final String change;
    private final String kernelMessage;
    private final int refused;

    /**
     * A refused batch.
     *
     * @param table         the table, e.g. {@code inet egressd}.
     * @param index         the refused change's index in the batch; -1 when the kernel refused the batch as a whole.
     * @param change        the refused change ({@link NftOp#describe()}), or a description of the batch.
     * @param errno         the positive errno.
     * @param kernelMessage the extended-ack text, or null.
     * @param refused       how many changes of the batch the kernel refused.
     */
    public NftRefusedException(final String table, final int index, final String change, final int errno,
                               final String kernelMessage, final int refused)
    {
        super("nf_tables batch on " + table + " refused, nothing changed: " + change
            + (index >= 0 ? " (change " + (index + 1) + ")" : "") + ": " + Natives.strerror(errno) + " (errno " + errno + ")"
            + (kernelMessage == null || kernelMessage.isEmpty() ? "" : ": " + kernelMessage)
            + (refused > 1 ? "; " + (refused - 1) + " more change(s) refused" : ""), errno, true);
        this.index = index;
        this.change = change;
        this.kernelMessage = kernelMessage;
        this.refused = refused;
    }

    /**
     * How many changes of the batch the kernel refused.
     *
     * @return at least 1.
     */
    public int refused()
    {
        return Math.max(1, refused);
    }

    /**
     * The refused change's index in the batch.
     *
     * @return 0-based; -1 when the batch as a whole was refused.
     */
    public int index()
    {
        return index;
    }

    /**
     * The refused change.
     *
     * @return its description.
     */
    public String change()
    {
        return change;
    }

    /**
     * The kernel's extended-ack text.
     *
     * @return the text, or null.
     */
    public String kernelMessage()
    {
        return kernelMessage;
    }

    /**
     * Whether an element (or object) was already there with other data (EEXIST).
     *
     * @return true for EEXIST.
     */
    public boolean isAlreadyExists()
    {
        return errno() == LibC.EEXIST;
    }

    /**
     * Whether an element, set, chain or table was missing (ENOENT).
     *
     * @return true for ENOENT.
     */
    public boolean isNotFound()
    {
        return errno() == LibC.ENOENT;
    }
}
