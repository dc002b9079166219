package dev.egressd.agent.api;

import com.fasterxml.jackson.databind.JsonNode;
import dev.egressd.agent.kernel.FakeKernel;
import dev.egressd.agent.reconcile.ControlLoop;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.HostSettings;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.channel.socket.ChannelInputShutdownEvent;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpResponseDecoder;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

import static org.assertj.core.api.Assertions.assertThat;

/** The API's HTTP layer fed raw bytes, as a client on the socket would send them: framing, order, limits. */
class HttpFramingTest
{
    @TempDir
    Path dir;

    private final HostSettings settings = new HostSettings("ord", new BlockLayout(4, 1024), 1024);
    private final AtomicLong clock = new AtomicLong();
    private ControlLoop loop;
    /** The loop's tasks when a test holds them back, like a busy loop thread; else they run at once. */
    private final ArrayDeque<Runnable> tasks = new ArrayDeque<>();
    private boolean holdTasks;

    /** An answer: status, its Connection header and its parsed JSON body. */
    record Answer(int status, String connection, JsonNode body)
    {
    }

    @BeforeEach
    void setUp() throws Exception
    {
        loop = ControlLoop.of(settings, DesiredState.empty(new DesiredState.Host("ord", 4, 1024, 1024)),
            new FakeKernel(), new StateStore(dir), r ->
            {
                if (holdTasks)
                {
                    tasks.add(r);
                }
                else
                {
                    r.run();
                }
            }, clock::get, 350);
        loop.initialSync();
    }

    /** A connection with the server's own HTTP layer in front of the handler. */
    static EmbeddedChannel connection(final ControlLoop loop)
    {
        final EmbeddedChannel channel = new EmbeddedChannel();
        ApiServer.http(channel.pipeline());
        channel.pipeline().addLast(new PeerCheckHandler(PeerPolicy.ROOT_ONLY, c -> new PeerCheckHandler.Peer(1, 0, 0)),
            new ApiHandler(loop, "test", () -> "egressd_up 1\n", Runnable::run));
        return channel;
    }

    static void send(final EmbeddedChannel channel, final String bytes)
    {
        channel.writeInbound(Unpooled.copiedBuffer(bytes, StandardCharsets.ISO_8859_1));
    }

    /** Every answer written so far, in order. */
    static List<Answer> answers(final EmbeddedChannel channel) throws Exception
    {
        final EmbeddedChannel client = new EmbeddedChannel(new HttpResponseDecoder(),
            new HttpObjectAggregator(1 << 20));
        for (ByteBuf out = channel.readOutbound(); out != null; out = channel.readOutbound())
        {
            client.writeInbound(out);
        }
        final List<Answer> answers = new ArrayList<>();
        for (FullHttpResponse r = client.readInbound(); r != null; r = client.readInbound())
        {
            try
            {
                final String text = r.content().toString(StandardCharsets.UTF_8);
                final JsonNode body = text.startsWith("{") ? Body.MAPPER.readTree(text)
                    : Body.MAPPER.getNodeFactory().textNode(text);
                answers.add(new Answer(r.status().code(), r.headers().get("connection"), body));
            }
            finally
            {
                r.release();
            }
        }
        client.finishAndReleaseAll();
        return answers;
    }

    static String get(final String uri)
    {
        return "GET " + uri + " HTTP/1.1\r\nHost: e\r\n\r\n";
    }

    @ParameterizedTest
    @ValueSource(strings = {"/v1/machines/%zz", "/v1/apps/%", "/v1/health?x=%zz", "/v1/apps/a%2"})
    void aBadPercentEscapeIs400NamingThePathOrQueryAndTheConnectionLives(final String uri) throws Exception
    {
        final EmbeddedChannel channel = connection(loop);
        send(channel, get(uri) + get("/v1/health"));
        final List<Answer> answers = answers(channel);
        assertThat(answers).as(uri).hasSize(2);
        assertThat(answers.get(0).status()).isEqualTo(400);
        assertThat(answers.get(0).body().at("/error/code").asText()).isEqualTo("invalid");
        assertThat(answers.get(0).body().at("/error/field").asText()).isEqualTo(uri.contains("?") ? "query" : "path");
        assertThat(answers.get(1).status()).isEqualTo(200);
        assertThat(channel.isOpen()).isTrue();
        channel.finishAndReleaseAll();
    }

    @ParameterizedTest
    @ValueSource(strings = {
        "Content-Length: abc\r\n\r\n{\"fail_closed\":false}",
        "Content-Length: -1\r\n\r\n{\"fail_closed\":false}",
        "Content-Length: 1, 2\r\n\r\n{\"fail_closed\":false}",
        "Content-Length: 21\r\nContent-Length: 22\r\n\r\n{\"fail_closed\":false}",
        "Transfer-Encoding: gzip\r\n\r\n{\"fail_closed\":false}",
        "Transfer-Encoding: chunked\r\n\r\nzz\r\n{\"fail_closed\":false}\r\n0\r\n\r\n",
        "Content-Length: 21\r\nTransfer-Encoding: chunked\r\n\r\n15\r\n{\"fail_closed\":false}\r\n0\r\n\r\n",
    })
    void aRequestWhoseFramingFailedIs400ChangesNothingAndCloses(final String rest) throws Exception
    {
        final EmbeddedChannel channel = connection(loop);
        send(channel, "PUT /v1/apps/x HTTP/1.1\r\nHost: e\r\n" + rest + get("/v1/apps/x"));
        final List<Answer> answers = answers(channel);
        assertThat(answers).as(rest).hasSize(1);
        assertThat(answers.get(0).status()).as(rest + " -> " + answers.get(0).body()).isEqualTo(400);
        assertThat(answers.get(0).body().at("/error/code").asText()).isEqualTo("bad_request");
        assertThat(answers.get(0).connection()).isEqualTo("close");
        assertThat(channel.isOpen()).isFalse();
        assertThat(Views.app(loop, "x")).as("nothing changed").isEmpty();
    }

    @Test
    void pipelinedRequestsAreAnsweredInOrder() throws Exception
    {
        holdTasks = true; // the state query waits on the loop; health is answered at once
        final EmbeddedChannel channel = connection(loop);
        send(channel, get("/v1/state") + get("/v1/health") + get("/v1/state") + get("/v1/health"));
        while (!tasks.isEmpty() || channel.hasPendingTasks())
        {
            while (!tasks.isEmpty())
            {
                tasks.poll().run();
            }
            channel.runPendingTasks();
        }
        final List<Answer> answers = answers(channel);
        assertThat(answers).hasSize(4);
        assertThat(answers.get(0).body().has("apps")).as("state first").isTrue();
        assertThat(answers.get(1).body().has("kernel")).as("health second").isTrue();
        assertThat(answers.get(2).body().has("apps")).isTrue();
        assertThat(answers.get(3).body().has("kernel")).isTrue();
        channel.finishAndReleaseAll();
    }

    @Test
    void aConnectionHoldsAtMostMaxPipelinedRequestsAndStopsReadingThere() throws Exception
    {
        holdTasks = true; // nothing is answered until the loop runs: requests pile up
        final EmbeddedChannel channel = connection(loop);
        final StringBuilder burst = new StringBuilder();
        for (int i = 0; i < ApiHandler.MAX_PIPELINED; i++)
        {
            burst.append(get("/v1/state"));
        }
        send(channel, burst.toString());
        // one answered at a time: the first is being answered, the others wait; reading stopped at the limit
        assertThat(channel.config().isAutoRead()).as("reading stops at the limit").isFalse();
        // the same read held more than the limit: those are dropped, undone, and said so after the queued answers
        send(channel, get("/v1/state") + "PUT /v1/apps/late HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        while (!tasks.isEmpty() || channel.hasPendingTasks())
        {
            while (!tasks.isEmpty())
            {
                tasks.poll().run();
            }
            channel.runPendingTasks();
        }
        final List<Answer> answers = answers(channel);
        assertThat(answers).hasSize(ApiHandler.MAX_PIPELINED + 1);
        assertThat(answers.subList(0, ApiHandler.MAX_PIPELINED)).allMatch(a -> a.status() == 200);
        final Answer last = answers.get(ApiHandler.MAX_PIPELINED);
        assertThat(last.status()).isEqualTo(429);
        assertThat(last.body().at("/error/code").asText()).isEqualTo("too_many_pipelined");
        assertThat(channel.isOpen()).isFalse();
        assertThat(Views.app(loop, "late")).isEmpty();
    }

    @Test
    void readingResumesOnceTheQueueDrains() throws Exception
    {
        holdTasks = true;
        final EmbeddedChannel channel = connection(loop);
        final StringBuilder burst = new StringBuilder();
        for (int i = 0; i < ApiHandler.MAX_PIPELINED; i++)
        {
            burst.append(get("/v1/state"));
        }
        send(channel, burst.toString());
        assertThat(channel.config().isAutoRead()).isFalse();
        while (!tasks.isEmpty())
        {
            tasks.poll().run();
            channel.runPendingTasks();
        }
        assertThat(answers(channel)).hasSize(ApiHandler.MAX_PIPELINED);
        assertThat(channel.config().isAutoRead()).isTrue();
        assertThat(channel.isOpen()).isTrue();
        channel.finishAndReleaseAll();
    }

    @Test
    void aPeerThatHalfClosesGetsItsAnswerThenTheConnectionCloses() throws Exception
    {
        holdTasks = true;
        final EmbeddedChannel channel = connection(loop);
        send(channel, "PUT /v1/apps/h HTTP/1.1\r\nContent-Length: 20\r\n\r\n{\"fail_closed\":true}");
        channel.pipeline().fireUserEventTriggered(ChannelInputShutdownEvent.INSTANCE);
        assertThat(channel.isOpen()).as("open until answered").isTrue();
        while (!tasks.isEmpty())
        {
            tasks.poll().run();
        }
        channel.runPendingTasks();
        final List<Answer> answers = answers(channel);
        assertThat(answers).hasSize(1);
        assertThat(answers.get(0).status()).isEqualTo(200);
        assertThat(channel.isOpen()).isFalse();
    }

    @Test
    void errorsOfTheHttpLayerHaveAJsonBody() throws Exception
    {
        final EmbeddedChannel channel = connection(loop);
        send(channel, "PUT /v1/apps/big HTTP/1.1\r\nContent-Length: " + (ApiServer.MAX_BODY + 1) + "\r\n\r\n");
        List<Answer> answers = answers(channel);
        assertThat(answers).hasSize(1);
        assertThat(answers.get(0).status()).isEqualTo(413);
        assertThat(answers.get(0).body().at("/error/code").asText()).isEqualTo("too_large");
        channel.finishAndReleaseAll();

        final EmbeddedChannel expect = connection(loop);
        send(expect, "PUT /v1/apps/e HTTP/1.1\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n");
        answers = answers(expect);
        assertThat(answers).hasSize(1);
        assertThat(answers.get(0).status()).isEqualTo(417);
        assertThat(answers.get(0).body().at("/error/code").asText()).isEqualTo("expectation_failed");
        assertThat(Views.app(loop, "e")).isEmpty();
        expect.finishAndReleaseAll();

        final EmbeddedChannel header = connection(loop);
        send(header, "GET /v1/health HTTP/1.1\r\nX: " + "a".repeat(20_000) + "\r\n\r\n");
        answers = answers(header);
        assertThat(answers).hasSize(1);
        assertThat(answers.get(0).status()).isEqualTo(400);
        assertThat(answers.get(0).body().at("/error/code").asText()).isEqualTo("bad_request");
        header.finishAndReleaseAll();
    }

    @ParameterizedTest
    @ValueSource(strings = {"http://e/v1/health", "http://egressd/v1/health?x=1", "HTTP://e:80/v1/health"})
    void anAbsoluteFormTargetIsServedAsItsPath(final String uri) throws Exception
    {
        final EmbeddedChannel channel = connection(loop);
        send(channel, get(uri));
        final List<Answer> answers = answers(channel);
        assertThat(answers).hasSize(1);
        assertThat(answers.get(0).status()).as(uri).isEqualTo(200);
        channel.finishAndReleaseAll();
    }

    @Test
    void theOriginFormOfATarget()
    {
        assertThat(ApiHandler.originForm("http://e")).isEqualTo("/");
        assertThat(ApiHandler.originForm("http://e?x=1")).isEqualTo("/?x=1");
        assertThat(ApiHandler.originForm("/v1/apps/http://x")).isEqualTo("/v1/apps/http://x");
    }

    @Test
    void aPeerGoneBeforeItsCredentialsAreReadIsClosedWithoutARefusal() throws Exception
    {
        final EmbeddedChannel channel = new EmbeddedChannel();
        ApiServer.http(channel.pipeline());
        channel.pipeline().addLast(new PeerCheckHandler(PeerPolicy.ROOT_ONLY, c -> null),
            new ApiHandler(loop, "test", null, Runnable::run));
        final var logged = LogCapture.of(PeerCheckHandler.class);
        try
        {
            send(channel, get("/v1/health"));
            assertThat(answers(channel)).isEmpty();
            assertThat(channel.isOpen()).isFalse();
            assertThat(logged.warnings()).isEmpty();
        }
        finally
        {
            logged.close();
        }
    }

    @Test
    void connectionsOverTheLimitAreClosedAtOnce()
    {
        final ConnectionLimit limit = new ConnectionLimit(2);
        final EmbeddedChannel a = new EmbeddedChannel(limit);
        final EmbeddedChannel b = new EmbeddedChannel(limit);
        final EmbeddedChannel c = new EmbeddedChannel(limit);
        assertThat(a.isOpen()).isTrue();
        assertThat(b.isOpen()).isTrue();
        assertThat(c.isOpen()).as("the third of two").isFalse();
        assertThat(limit.open()).isEqualTo(2);
        a.close();
        final EmbeddedChannel d = new EmbeddedChannel(limit);
        assertThat(d.isOpen()).as("room again once one closed").isTrue();
        assertThat(limit.open()).isEqualTo(2);
        b.close();
        d.close();
        assertThat(limit.open()).isZero();
    }
}
