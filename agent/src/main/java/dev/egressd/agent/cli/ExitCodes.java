package dev.egressd.agent.cli;

/** egressctl's exit codes (docs/cli.md): a script may rely on them. */
public final class ExitCodes
{
    /** Done; for {@code check}, no problem found. */
    public static final int OK = 0;
    /** The daemon answered an error (4xx other than 403, 5xx), or {@code check}/{@code status} found a problem. */
    public static final int ERROR = 1;
    /** Bad usage: unknown command or option, missing or malformed argument. */
    public static final int USAGE = 2;
    /** The daemon is unreachable: no socket, connection refused, no answer within the timeout. */
    public static final int UNREACHABLE = 3;
    /** Permission denied: the socket refused us (EACCES) or the daemon answered 403. */
    public static final int PERMISSION = 4;

    private ExitCodes()
    {
    }
}
