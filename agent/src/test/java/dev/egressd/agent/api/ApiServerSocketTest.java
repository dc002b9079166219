package dev.egressd.agent.api;

import dev.egressd.agent.kernel.FakeKernel;
import dev.egressd.agent.reconcile.ControlLoop;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.HostSettings;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicLong;

import static dev.egressd.agent.api.RawSocket.readAll;
import static dev.egressd.agent.api.RawSocket.write;
import static org.assertj.core.api.Assertions.assertThat;

/** A real {@link ApiServer} on a unix socket, spoken to with raw bytes: what a connection's life looks like. */
@Timeout(30)
class ApiServerSocketTest
{
    @TempDir
    Path dir;

    private ApiServer server;
    private ControlLoop loop;
    private Path socket;

    @BeforeEach
    void setUp() throws Exception
    {
        loop = ControlLoop.of(new HostSettings("ord", new BlockLayout(4, 1024), 1024),
            DesiredState.empty(new DesiredState.Host("ord", 4, 1024, 1024)), new FakeKernel(),
            new StateStore(dir.resolve("state")), Executors.newSingleThreadExecutor(), new AtomicLong()::get, 350);
        loop.initialSync();
        // whoever runs the test may connect: root, or this uid in this gid
        final int uid = (Integer)Files.getAttribute(Path.of("/proc/self"), "unix:uid");
        final int gid = (Integer)Files.getAttribute(Path.of("/proc/self"), "unix:gid");
        server = new ApiServer(new PeerPolicy(gid, Set.of(uid)));
        socket = dir.resolve("api.sock");
        server.start(socket, null, loop, null, "test", null, Runnable::run);
    }

    @AfterEach
    void tearDown()
    {
        server.close();
    }

    private SocketChannel connect() throws IOException
    {
        return RawSocket.connect(socket);
    }

    @Test
    void aClientThatHalfClosesAfterItsPutGetsTheAnswer() throws Exception
    {
        try (SocketChannel channel = connect())
        {
            final String body = "{\"fail_closed\":false}";
            write(channel, "PUT /v1/apps/half HTTP/1.1\r\nHost: e\r\nContent-Length: " + body.length() + "\r\n\r\n"
                + body);
            channel.shutdownOutput();
            final String answer = readAll(channel);
            assertThat(answer).startsWith("HTTP/1.1 200").contains("\"fail_closed\" : false");
        }
        assertThat(loop.query(l -> Views.app(l, "half").isPresent()).get()).isTrue();
    }

    @Test
    void pipelinedAnswersComeBackInOrderOverTheSocket() throws Exception
    {
        try (SocketChannel channel = connect())
        {
            final StringBuilder burst = new StringBuilder();
            for (int i = 0; i < 10; i++)
            {
                burst.append("GET /v1/state HTTP/1.1\r\nHost: e\r\n\r\nGET /v1/health HTTP/1.1\r\nHost: e\r\n\r\n");
            }
            burst.append("GET /v1/health HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n");
            write(channel, burst.toString());
            final String[] answers = readAll(channel).split("HTTP/1\\.1 ");
            assertThat(answers).hasSize(22); // the text before the first answer, then 21 answers
            for (int i = 1; i < answers.length; i++)
            {
                final boolean state = i % 2 == 1 && i < 21;
                assertThat(answers[i]).as("answer " + i).startsWith("200");
                assertThat(answers[i].contains("\"apps\"")).as("answer " + i + " is the " + (state ? "state" : "health"))
                    .isEqualTo(state);
            }
        }
    }

    @Test
    void aPeerThatHangsUpBeforeFinishingItsHeadersIsNotLoggedAsRefused() throws Exception
    {
        try (LogCapture logged = LogCapture.of(PeerCheckHandler.class))
        {
            try (SocketChannel channel = connect())
            {
                write(channel, "GET /v1/he");
            }
            final long deadline = System.nanoTime() + 10_000_000_000L;
            while (server.openConnections() > 0 && System.nanoTime() < deadline)
            {
                Thread.sleep(10);
            }
            // One event loop serves every connection: once a later connection is answered, the first one's
            // end has been handled entirely.
            try (SocketChannel channel = connect())
            {
                write(channel, "GET /v1/health HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n");
                assertThat(readAll(channel)).startsWith("HTTP/1.1 200");
            }
            assertThat(logged.warnings()).isEmpty();
        }
    }
}
