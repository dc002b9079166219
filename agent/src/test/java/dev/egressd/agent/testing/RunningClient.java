package dev.egressd.agent.testing;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/** A guest's client running in the background ({@link Guest#startClient}): its output lines as they come. */
public final class RunningClient implements AutoCloseable
{
    private final Process process;
    private final BlockingQueue<String> lines = new LinkedBlockingQueue<>();

    RunningClient(final Process process)
    {
        this.process = process;
        final Thread reader = new Thread(() ->
        {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(process.getInputStream(),
                StandardCharsets.UTF_8)))
            {
                String line;
                while ((line = in.readLine()) != null)
                {
                    lines.add(line);
                }
            }
            catch (final IOException e)
            {
                lines.add("fail EIO");
            }
            lines.add("<eof>");
        }, "lab-client-reader");
        reader.setDaemon(true);
        reader.start();
    }

    /**
     * The next output line.
     *
     * @param timeout how long to wait.
     * @return the line, {@code <eof>} when the client ended, or null on timeout.
     * @throws InterruptedException if interrupted.
     */
    public String nextLine(final Duration timeout) throws InterruptedException
    {
        return lines.poll(timeout.toMillis(), TimeUnit.MILLISECONDS);
    }

    /**
     * Waits for the next line and parses it as a result.
     *
     * @param timeout how long to wait.
     * @return the result.
     * @throws InterruptedException if interrupted.
     */
    public ClientResult next(final Duration timeout) throws InterruptedException
    {
        final String line = nextLine(timeout);
        if (line == null || line.equals("<eof>"))
        {
            throw new AssertionError("client gave no result within " + timeout + " (" + line + ")");
        }
        return ClientResult.parse(line);
    }

    /**
     * Discards every line already received.
     *
     * @return how many were discarded.
     */
    public int drain()
    {
        final List<String> old = new ArrayList<>();
        lines.drainTo(old);
        old.stream().filter("<eof>"::equals).forEach(lines::add);
        return old.size();
    }

    /**
     * Waits for the client to end.
     *
     * @param timeout how long to wait.
     * @return every line not read yet (without {@code <eof>}).
     * @throws InterruptedException if interrupted.
     */
    public List<String> awaitEnd(final Duration timeout) throws InterruptedException
    {
        final List<String> rest = new ArrayList<>();
        final long deadline = System.nanoTime() + timeout.toNanos();
        while (true)
        {
            final String line = lines.poll(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            if (line == null)
            {
                throw new AssertionError("client did not end within " + timeout + "; so far " + rest);
            }
            if (line.equals("<eof>"))
            {
                return rest;
            }
            rest.add(line);
        }
    }

    @Override
    public void close()
    {
        process.destroy();
        try
        {
            if (!process.waitFor(2, TimeUnit.SECONDS))
            {
                process.destroyForcibly();
            }
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
    }
}
