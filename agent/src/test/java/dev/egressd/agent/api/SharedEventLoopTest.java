package dev.egressd.agent.api;

import dev.egressd.agent.kernel.KernelException;
import dev.egressd.agent.kernel.MemoryKernel;
import dev.egressd.agent.reconcile.ControlLoop;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.plan.PlanChange;
import io.netty.channel.EventLoopGroup;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static dev.egressd.agent.api.RawSocket.readAll;
import static dev.egressd.agent.api.RawSocket.write;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * The control loop on the API server's one event loop (the daemon with {@code -Degressd.loop-thread=event-loop}):
 * a change is read, committed and answered on one thread. What that must keep: an answer only after the kernel
 * holds its change, answers in the order of a connection's requests, and changes that queue while one commits still
 * going to the kernel and the disk together.
 */
@Timeout(60)
class SharedEventLoopTest
{
    @TempDir
    Path dir;

    private EventLoopGroup group;
    private HookedKernel kernel;
    private ControlLoop loop;
    private ApiServer server;
    private Path socket;

    /** A memory kernel that runs a hook before each batch it applies, on the thread applying it. */
    static final class HookedKernel extends MemoryKernel
    {
        final AtomicReference<Runnable> beforeApply = new AtomicReference<>(() -> { });
        final AtomicInteger batches = new AtomicInteger();
        volatile Thread applier;

        @Override
        public void apply(final List<PlanChange> changes) throws KernelException
        {
            applier = Thread.currentThread();
            beforeApply.get().run();
            super.apply(changes);
            batches.incrementAndGet();
        }
    }

    @BeforeEach
    void setUp() throws Exception
    {
        group = ApiServer.eventLoop("test-control");
        kernel = new HookedKernel();
        loop = ControlLoop.of(new HostSettings("ord", new BlockLayout(4, 1024), 1024),
            DesiredState.empty(new DesiredState.Host("ord", 4, 1024, 1024)), kernel,
            new StateStore(dir.resolve("state")), group.next(), System::nanoTime, 350);
        group.next().submit((java.util.concurrent.Callable<Object>)() ->
        {
            loop.initialSync(); // on the loop's thread, as the daemon does it
            return null;
        }).get(10, TimeUnit.SECONDS);
        final int uid = (Integer)Files.getAttribute(Path.of("/proc/self"), "unix:uid");
        final int gid = (Integer)Files.getAttribute(Path.of("/proc/self"), "unix:gid");
        server = new ApiServer(new PeerPolicy(gid, Set.of(uid)), group);
        socket = dir.resolve("api.sock");
        server.start(socket, null, loop, null, "test", null, Runnable::run);
        assertThat(exchange("POST /v1/apps/a1/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\"}"))
            .startsWith("HTTP/1.1 200");
    }

    @AfterEach
    void tearDown()
    {
        server.close();
        group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
    }

    @Test
    void aChangeIsCommittedAndAnsweredOnTheEventLoopThread() throws Exception
    {
        final AtomicReference<Thread> io = new AtomicReference<>();
        group.next().submit(() -> io.set(Thread.currentThread())).get(5, TimeUnit.SECONDS);
        assertThat(exchange("PUT /v1/machines/m1", machine("m1", 2))).startsWith("HTTP/1.1 200");
        assertThat(kernel.applier).isSameAs(io.get());
        assertThat(loop.query(l -> l.allocator().machine("m1").isPresent()).get(5, TimeUnit.SECONDS)).isTrue();
    }

    /**
     * A's answer is on A's socket before B's change reaches the kernel: the thread that committed A wrote its answer
     * before it took the next change. With a loop thread of its own this holds only by timing (the loop hands A's
     * answer to the event loop, writes its log line, then takes B; the same test passed with that wiring too); on
     * one thread it holds by construction.
     */
    @Test
    void aChangesAnswerIsWrittenBeforeTheLoopTakesTheNextChange() throws Exception
    {
        try (SocketChannel a = connect(); SocketChannel b = connect())
        {
            final CountDownLatch inA = new CountDownLatch(1);
            final CountDownLatch bSent = new CountDownLatch(1);
            final AtomicInteger applies = new AtomicInteger();
            final AtomicReference<String> seenAtB = new AtomicReference<>();
            final ByteArrayOutputStream aBytes = new ByteArrayOutputStream();
            a.configureBlocking(false);
            kernel.beforeApply.set(() ->
            {
                if (applies.incrementAndGet() == 1)
                {
                    inA.countDown();
                    await(bSent);
                    pause(); // time for a separate event loop to read B and queue it behind A
                    return;
                }
                seenAtB.set(drain(a, aBytes));
            });
            write(a, request("PUT /v1/machines/ma", machine("ma", 2), true));
            assertThat(inA.await(10, TimeUnit.SECONDS)).isTrue();
            write(b, request("PUT /v1/machines/mb", machine("mb", 3), true));
            bSent.countDown();
            assertThat(readAll(b)).startsWith("HTTP/1.1 200");
            assertThat(applies.get()).isEqualTo(2);
            assertThat(seenAtB.get()).as("A's answer when B's change went to the kernel").startsWith("HTTP/1.1 200")
                .contains("\"id\" : \"ma\"");
        }
    }

    /**
     * Changes that come while one commits are read once it is answered and go to the kernel in one batch and to
     * disk in one record, each answered after both.
     */
    @Test
    void changesQueuedBehindACommitStillGoTogether() throws Exception
    {
        final int clients = 8;
        final List<SocketChannel> channels = new ArrayList<>();
        try
        {
            for (int i = 0; i < clients + 1; i++)
            {
                channels.add(connect());
            }
            // every connection accepted first: one accepted after the first commit would be read a turn later
            final long deadline = System.nanoTime() + 10_000_000_000L;
            while (server.openConnections() < clients + 1 && System.nanoTime() < deadline)
            {
                Thread.sleep(5);
            }
            assertThat(server.openConnections()).isEqualTo(clients + 1);
            final CountDownLatch inFirst = new CountDownLatch(1);
            final CountDownLatch allSent = new CountDownLatch(1);
            final AtomicInteger applies = new AtomicInteger();
            kernel.beforeApply.set(() ->
            {
                if (applies.incrementAndGet() == 1)
                {
                    inFirst.countDown();
                    await(allSent);
                    pause(); // every request is in its socket before the loop looks again
                }
            });
            write(channels.get(0), request("PUT /v1/machines/m0", machine("m0", 2), true));
            assertThat(inFirst.await(10, TimeUnit.SECONDS)).isTrue();
            final long batchesBefore = loop.batches();
            for (int i = 1; i <= clients; i++)
            {
                write(channels.get(i), request("PUT /v1/machines/m" + i, machine("m" + i, 2 + i), true));
            }
            allSent.countDown();
            assertThat(readAll(channels.get(0))).startsWith("HTTP/1.1 200");
            for (int i = 1; i <= clients; i++)
            {
                assertThat(readAll(channels.get(i))).as("client " + i).startsWith("HTTP/1.1 200")
                    .contains("\"id\" : \"m" + i + "\"");
            }
            // the first commit counts in the batches once it ends; the eight after it share one
            assertThat(loop.batches() - batchesBefore).isEqualTo(2);
            assertThat(applies.get()).isEqualTo(2);
            assertThat(loop.query(l -> l.allocator().machines().size()).get(5, TimeUnit.SECONDS))
                .isEqualTo(clients + 1);
        }
        finally
        {
            for (final SocketChannel channel : channels)
            {
                channel.close();
            }
        }
    }

    @Test
    void pipelinedChangesAreAnsweredInTheirOrder() throws Exception
    {
        try (SocketChannel channel = connect())
        {
            final StringBuilder burst = new StringBuilder();
            for (int i = 0; i < 10; i++)
            {
                burst.append(request("PUT /v1/machines/p" + i, machine("p" + i, 10 + i), false));
                burst.append(request("DELETE /v1/machines/p" + i, null, false));
            }
            burst.append(request("GET /v1/health", null, true));
            write(channel, burst.toString());
            final String[] answers = readAll(channel).split("HTTP/1\\.1 ");
            assertThat(answers).hasSize(22);
            for (int i = 0; i < 10; i++)
            {
                assertThat(answers[1 + 2 * i]).as("answer to PUT p" + i).startsWith("200")
                    .contains("\"id\" : \"p" + i + "\"");
                assertThat(answers[2 + 2 * i]).as("answer to DELETE p" + i).startsWith("200")
                    .contains("\"deleted\" : \"p" + i + "\"");
            }
            assertThat(answers[21]).startsWith("200");
        }
        assertThat(loop.query(l -> l.allocator().machines().size()).get(5, TimeUnit.SECONDS)).isZero();
    }

    private static String machine(final String id, final int host)
    {
        return "{\"app\": \"a1\", \"interface\": \"tap-" + id + "\", \"ipv4\": \"10.77.0." + host + "\"}";
    }

    private static String request(final String line, final String body, final boolean close)
    {
        final String text = body == null ? "" : body;
        return line + " HTTP/1.1\r\nHost: e\r\nContent-Length: " + text.length() + "\r\n"
            + (close ? "Connection: close\r\n" : "") + "\r\n" + text;
    }

    private String exchange(final String line, final String body) throws IOException
    {
        try (SocketChannel channel = connect())
        {
            write(channel, request(line, body, true));
            return readAll(channel);
        }
    }

    private SocketChannel connect() throws IOException
    {
        return RawSocket.connect(socket);
    }

    /** What a non-blocking channel holds now, added to {@code into}; all of it so far. */
    private static String drain(final SocketChannel channel, final ByteArrayOutputStream into)
    {
        final ByteBuffer buffer = ByteBuffer.allocate(8192);
        try
        {
            while (channel.read(buffer) > 0)
            {
                into.write(buffer.array(), 0, buffer.position());
                buffer.clear();
            }
        }
        catch (final IOException e)
        {
            throw new java.io.UncheckedIOException(e);
        }
        return into.toString(StandardCharsets.UTF_8);
    }

    private static void await(final CountDownLatch latch)
    {
        try
        {
            assertThat(latch.await(10, TimeUnit.SECONDS)).isTrue();
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    private static void pause()
    {
        try
        {
            Thread.sleep(200);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }
}
