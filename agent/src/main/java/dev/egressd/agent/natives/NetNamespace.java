package dev.egressd.agent.natives;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * A single thread that lives in a named network namespace ({@code /run/netns/NAME}, as {@code ip netns}
 * makes them), so tests and tools can program a lab namespace from one JVM.
 *
 * <p>setns(2) moves only the calling thread, so every kernel call meant for the namespace must run on
 * this thread: netlink sockets belong to the namespace of the thread that created them. The thread
 * proves where it is (comparing {@code /proc/thread-self/ns/net} with the namespace file) before it
 * runs anything, so nothing meant for a lab can touch the root namespace.
 */
public final class NetNamespace implements AutoCloseable
{
    private final String name;
    private final ExecutorService thread;

    private NetNamespace(final String name, final ExecutorService thread)
    {
        this.name = name;
        this.thread = thread;
    }

    /**
     * Starts a thread inside the named namespace.
     *
     * @param name the namespace name, as given to {@code ip netns add}.
     * @return the namespace handle.
     * @throws IOException if the namespace does not exist or setns fails.
     */
    public static NetNamespace enter(final String name) throws IOException
    {
        final Path nsFile = Path.of("/run/netns", name);
        if (!Files.exists(nsFile))
        {
            throw new IOException("network namespace " + name + " does not exist (" + nsFile + ")");
        }
        final ExecutorService thread = Executors.newSingleThreadExecutor(r ->
        {
            final Thread t = new Thread(r, "netns-" + name);
            t.setDaemon(true);
            return t;
        });
        final NetNamespace ns = new NetNamespace(name, thread);
        try
        {
            ns.call(() ->
            {
                final LibC libc = Natives.libc();
                final int fd = libc.open(nsFile.toString(), LibC.O_RDONLY | LibC.O_CLOEXEC);
                if (fd < 0)
                {
                    throw new NativeException("open(" + nsFile + ")", Natives.errno());
                }
                try
                {
                    if (libc.setns(fd, LibC.CLONE_NEWNET) != 0)
                    {
                        throw new NativeException("setns(" + name + ")", Natives.errno());
                    }
                }
                finally
                {
                    libc.close(fd);
                }
                final Object want = Files.getAttribute(nsFile, "unix:ino");
                final String have = Files.readSymbolicLink(Path.of("/proc/thread-self/ns/net")).toString();
                if (!have.equals("net:[" + want + "]"))
                {
                    throw new IOException("thread is in " + have + ", not in namespace " + name + " (inode " + want + ")");
                }
                return null;
            });
        }
        catch (final IOException | RuntimeException e)
        {
            thread.shutdownNow();
            throw e;
        }
        return ns;
    }

    /**
     * Runs a task on the namespace's thread and waits for it.
     *
     * @param task the task.
     * @param <T>  its result type.
     * @return its result.
     * @throws IOException what the task threw, when an IOException.
     */
    public <T> T call(final Callable<T> task) throws IOException
    {
        final Future<T> future = thread.submit(task);
        try
        {
            return future.get();
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while running in namespace " + name, e);
        }
        catch (final ExecutionException e)
        {
            final Throwable cause = e.getCause();
            if (cause instanceof IOException io)
            {
                throw io;
            }
            if (cause instanceof RuntimeException re)
            {
                throw re;
            }
            if (cause instanceof Error err)
            {
                throw err;
            }
            throw new IOException(cause);
        }
    }

    /**
     * The namespace's thread as an executor, for a task that must run there without the caller waiting (a second
     * thread of a loop, such as its reader). Shut down by {@link #close()}.
     *
     * @return the executor.
     */
    public ExecutorService executor()
    {
        return thread;
    }

    /**
     * The namespace name.
     *
     * @return the name.
     */
    public String name()
    {
        return name;
    }

    @Override
    public void close()
    {
        thread.shutdownNow();
    }
}
