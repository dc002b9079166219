package dev.egressd.agent.cli;

/** A failure egressctl reports with one line on stderr and a documented exit code. */
final class CtlException extends Exception
{
    final int exitCode;

    CtlException(final int exitCode, final String message)
    {
        super(message, null, false, false);
        this.exitCode = exitCode;
    }
}
