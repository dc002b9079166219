package dev.egressd.agent.testing;

/**
 * One connection's outcome as a guest's client saw it: the source the destination saw, or an errno name.
 *
 * @param ok       whether the destination answered.
 * @param seenIp   the source address the destination saw, or null.
 * @param seenPort the source port the destination saw, or -1.
 * @param error    the errno name (e.g. {@code ETIMEDOUT}), or null.
 */
public record ClientResult(boolean ok, String seenIp, int seenPort, String error)
{
    static ClientResult parse(final String line)
    {
        final String[] f = line.trim().split("\\s+");
        if (f.length == 3 && (f[0].equals("ok") || f[0].equals("echo")))
        {
            return new ClientResult(true, f[1], Integer.parseInt(f[2]), null);
        }
        if (f.length == 2 && f[0].equals("fail"))
        {
            return new ClientResult(false, null, -1, f[1]);
        }
        throw new IllegalArgumentException("unexpected client output: " + line);
    }

    @Override
    public String toString()
    {
        return ok ? seenIp + ":" + seenPort : "fail " + error;
    }
}
