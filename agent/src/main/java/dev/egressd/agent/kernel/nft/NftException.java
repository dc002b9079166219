package dev.egressd.agent.kernel.nft;

import java.io.IOException;

/**
 * A failed nft command or transaction, carrying nft's own error text (the same format as the
 * {@code nft} CLI: an {@code Error:} line, the failing command line, a caret line) and the command text
 * that was run. With buffer input, nft 1.0.6 prints the buffer's FIRST line under the error (with the
 * caret columns of the failing one), so the text does not say which line failed; see
 * {@link NftablesClient#check}. Predicates classify the kernel's reason the way knftables does, from the text, because
 * libnftables reports no errno.
 */
public class NftException extends IOException
{
    private static final long serialVersionUID = 1L;

    private final String command;
    private final String error;

    /**
     * An exception for a failed command.
     *
     * @param command the command or transaction text that was run.
     * @param error   nft's error-buffer text.
     */
    public NftException(final String command, final String error)
    {
        this(summary(error), command, error);
    }

    /**
     * An exception with a message of its own (e.g. naming the plan element that failed).
     *
     * @param message the message.
     * @param command the command or transaction text that was run.
     * @param error   nft's error-buffer text.
     */
    public NftException(final String message, final String command, final String error)
    {
        super(message);
        this.command = command == null ? "" : command;
        this.error = error == null ? "" : error;
    }

    /**
     * The command or transaction text that failed.
     *
     * @return the text given to nft.
     */
    public String command()
    {
        return command;
    }

    /**
     * nft's error text, verbatim.
     *
     * @return the error buffer's content.
     */
    public String error()
    {
        return error;
    }

    /**
     * The first {@code Error:} line's reason, e.g. {@code Could not process rule: File exists}.
     *
     * @return the reason, or the whole error text when it has no {@code Error:} line.
     */
    public String reason()
    {
        for (final String line : error.split("\n"))
        {
            final int at = line.indexOf("Error: ");
            if (at >= 0)
            {
                return line.substring(at + "Error: ".length()).trim();
            }
        }
        return error.trim();
    }

    /**
     * Whether an object the command named does not exist (ENOENT).
     *
     * @return true for "No such file or directory".
     */
    public boolean isNotFound()
    {
        return error.contains("No such file or directory");
    }

    /**
     * Whether the command tried to create what exists with other data (EEXIST).
     *
     * @return true for "File exists".
     */
    public boolean isAlreadyExists()
    {
        return error.contains("File exists");
    }

    /**
     * Whether the object is still in use, e.g. a chain a verdict map jumps to (EBUSY).
     *
     * @return true for "Device or resource busy".
     */
    public boolean isBusy()
    {
        return error.contains("Device or resource busy");
    }

    private static String summary(final String error)
    {
        final String text = error == null ? "" : error.strip();
        return "nft failed: " + (text.isEmpty() ? "(no error text)" : text.lines().findFirst().orElse(text));
    }
}
