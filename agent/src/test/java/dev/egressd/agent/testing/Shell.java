package dev.egressd.agent.testing;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Runs the fixtures' commands ({@code ip}, {@code nft}, {@code conntrack}, the lab's scripts) with a time limit,
 * their output read while they run so that a large listing cannot fill the pipe and hang them. Fixtures may
 * shell out; the code under test never does.
 */
public final class Shell
{
    private Shell()
    {
    }

    /** The result of a command: its exit code (-1 on timeout) and its stdout and stderr together. */
    public record Exec(int exitCode, String output)
    {
        /** @return whether it exited with 0. */
        public boolean ok()
        {
            return exitCode == 0;
        }
    }

    /** The result of a command with its stdout and stderr apart (for output a test parses, e.g. JSON). */
    public record Output(int exitCode, String stdout, String stderr)
    {
        @Override
        public String toString()
        {
            return "exit " + exitCode + (stderr.isBlank() ? "" : ", stderr: " + stderr.strip()) + "\n" + stdout;
        }
    }

    /**
     * Runs a command to its end, stdout and stderr together.
     *
     * @param timeout the longest it may run; then it is killed and the exit code is -1.
     * @param cmd     the command.
     * @return its exit code and output.
     * @throws IOException if it cannot start, or is interrupted.
     */
    public static Exec run(final Duration timeout, final List<String> cmd) throws IOException
    {
        final Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        final CompletableFuture<String> out = CompletableFuture.supplyAsync(() -> readAll(p.getInputStream()));
        try
        {
            if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS))
            {
                p.destroyForcibly();
                p.waitFor(2, TimeUnit.SECONDS);
                return new Exec(-1, "timed out after " + timeout + ": " + out.getNow(""));
            }
            return new Exec(p.exitValue(), out.get(5, TimeUnit.SECONDS));
        }
        catch (final InterruptedException e)
        {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new IOException("interrupted: " + cmd, e);
        }
        catch (final ExecutionException | TimeoutException e)
        {
            throw new IOException("reading the output of " + cmd, e);
        }
    }

    /**
     * Runs a command to its end with its stdout and stderr read apart, and nothing on its stdin.
     *
     * @param timeout the longest it may run; then it is killed and the exit code is -1.
     * @param cmd     the command.
     * @return its exit code, stdout and stderr.
     * @throws IOException if it cannot start, or is interrupted.
     */
    public static Output runApart(final Duration timeout, final List<String> cmd) throws IOException
    {
        final Process p = new ProcessBuilder(cmd).start();
        p.getOutputStream().close();
        final CompletableFuture<String> out = CompletableFuture.supplyAsync(() -> readAll(p.getInputStream()));
        final CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> readAll(p.getErrorStream()));
        try
        {
            if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS))
            {
                p.destroyForcibly();
                p.waitFor(2, TimeUnit.SECONDS);
                return new Output(-1, out.getNow(""), "timed out after " + timeout + ": " + err.getNow(""));
            }
            return new Output(p.exitValue(), out.get(5, TimeUnit.SECONDS), err.get(5, TimeUnit.SECONDS));
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted: " + cmd, e);
        }
        catch (final ExecutionException | TimeoutException e)
        {
            throw new IOException("reading the output of " + cmd, e);
        }
    }

    /**
     * Runs a command that must succeed.
     *
     * @param timeout the longest it may run.
     * @param cmd     the command.
     * @return its output (stdout and stderr together).
     * @throws IOException if it fails, times out or cannot start.
     */
    public static String must(final Duration timeout, final List<String> cmd) throws IOException
    {
        final Exec exec = run(timeout, cmd);
        if (!exec.ok())
        {
            throw new IOException(String.join(" ", cmd) + " exited " + exec.exitCode() + ": " + exec.output());
        }
        return exec.output();
    }

    private static String readAll(final InputStream in)
    {
        try
        {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        catch (final IOException e)
        {
            return "(output lost: " + e + ")";
        }
    }
}
