package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.netty.bootstrap.Bootstrap;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.epoll.EpollDomainSocketChannel;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.unix.DomainSocketAddress;
import io.netty.handler.codec.http.DefaultFullHttpRequest;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpClientCodec;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.util.internal.logging.InternalLoggerFactory;
import io.netty.util.internal.logging.JdkLoggerFactory;

import java.io.IOException;
import java.nio.channels.ClosedChannelException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * An HTTP/1.1 client of the egressd API over its unix socket, on Netty's epoll domain socket channel
 * ({@code EpollDomainSocketChannel} + {@code HttpClientCodec} + {@code HttpObjectAggregator}): one connection per
 * request ({@code Connection: close}), as a CLI makes a handful of requests.
 *
 * <p>Failures map to egressctl's exit codes: no socket, connection refused or no answer in time is
 * {@link ExitCodes#UNREACHABLE}; EACCES on the socket is {@link ExitCodes#PERMISSION}.
 */
final class DaemonClient implements AutoCloseable
{
    /** The largest answer read (a large host's {@code /v1/state} is well below it). */
    static final int MAX_ANSWER = 64 * 1024 * 1024;

    static final ObjectMapper MAPPER = new ObjectMapper();

    static
    {
        // Keep Netty away from logback (whose default configuration logs DEBUG to stdout) and start faster.
        InternalLoggerFactory.setDefaultFactory(JdkLoggerFactory.INSTANCE);
    }

    /**
     * An answer.
     *
     * @param status      the HTTP status.
     * @param contentType the Content-Type, or "".
     * @param body        the body.
     */
    record Answer(int status, String contentType, byte[] body)
    {
        /** @return the body as text. */
        String text()
        {
            return new String(body, StandardCharsets.UTF_8);
        }

        /**
         * The body as JSON.
         *
         * @return the tree, or a missing node if the body is not JSON.
         */
        JsonNode json()
        {
            try
            {
                final JsonNode node = MAPPER.readTree(body);
                return node == null ? MAPPER.missingNode() : node;
            }
            catch (final IOException e)
            {
                return MAPPER.missingNode();
            }
        }

        /** @return the error body's {@code error.code}, or "" if there is none. */
        String errorCode()
        {
            return json().path("error").path("code").asText("");
        }

        /** @return the error body's {@code error.message}, or the body itself. */
        String errorMessage()
        {
            final JsonNode message = json().path("error").path("message");
            return message.isTextual() ? message.asText() : text().strip();
        }
    }

    private final Path socket;
    private final long timeoutMillis;
    private EventLoopGroup group;

    /**
     * Creates a client; nothing is opened until the first request.
     *
     * @param socket        the API socket.
     * @param timeoutMillis how long one request may take, connect to last byte.
     */
    DaemonClient(final Path socket, final long timeoutMillis)
    {
        this.socket = socket;
        this.timeoutMillis = timeoutMillis;
    }

    /**
     * Sends one request and waits for its answer.
     *
     * @param method the method.
     * @param uri    the path and query, e.g. {@code /v1/state}.
     * @param body   a JSON body, or null.
     * @return the answer, whatever its status.
     * @throws CtlException exit 3 when the daemon cannot be reached, 4 when the socket refuses us.
     */
    Answer send(final String method, final String uri, final String body) throws CtlException
    {
        if (!Files.exists(socket))
        {
            throw new CtlException(ExitCodes.UNREACHABLE, "cannot reach egressd: no socket at " + socket
                + " (is egressd running? --socket or EGRESSD_SOCKET name another)");
        }
        if (group == null)
        {
            group = new MultiThreadIoEventLoopGroup(1, EpollIoHandler.newFactory());
        }
        final CompletableFuture<FullHttpResponse> answer = new CompletableFuture<>();
        final Bootstrap bootstrap = new Bootstrap().group(group).channel(EpollDomainSocketChannel.class)
            .option(ChannelOption.CONNECT_TIMEOUT_MILLIS, (int)Math.min(Integer.MAX_VALUE, timeoutMillis))
            .handler(new ChannelInitializer<Channel>()
            {
                @Override
                protected void initChannel(final Channel ch)
                {
                    ch.pipeline().addLast(new HttpClientCodec())
                        .addLast(new HttpObjectAggregator(MAX_ANSWER))
                        .addLast(new SimpleChannelInboundHandler<FullHttpResponse>()
                        {
                            @Override
                            protected void channelRead0(final ChannelHandlerContext ctx, final FullHttpResponse r)
                            {
                                answer.complete(r.retainedDuplicate());
                                ctx.close();
                            }

                            @Override
                            public void exceptionCaught(final ChannelHandlerContext ctx, final Throwable cause)
                            {
                                answer.completeExceptionally(cause);
                                ctx.close();
                            }

                            @Override
                            public void channelInactive(final ChannelHandlerContext ctx)
                            {
                                answer.completeExceptionally(new ClosedChannelException());
                            }
                        });
                }
            });
        final long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMillis);
        final Channel channel;
        try
        {
            final io.netty.channel.ChannelFuture connect = bootstrap.connect(new DomainSocketAddress(socket.toFile()));
            if (!connect.await(timeoutMillis))
            {
                connect.cancel(false);
                throw new CtlException(ExitCodes.UNREACHABLE, "cannot reach egressd at " + socket
                    + ": no connection within " + timeoutMillis + " ms");
            }
            if (!connect.isSuccess())
            {
                throw connectFailure(connect.cause());
            }
            channel = connect.channel();
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            throw new CtlException(ExitCodes.UNREACHABLE, "interrupted");
        }
        final byte[] bytes = body == null ? new byte[0] : body.getBytes(StandardCharsets.UTF_8);
        final FullHttpRequest request = new DefaultFullHttpRequest(HttpVersion.HTTP_1_1, HttpMethod.valueOf(method),
            uri, Unpooled.wrappedBuffer(bytes));
        request.headers().set(HttpHeaderNames.HOST, "egressd");
        request.headers().set(HttpHeaderNames.USER_AGENT, "egressctl");
        request.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE);
        request.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, bytes.length);
        if (body != null)
        {
            request.headers().set(HttpHeaderNames.CONTENT_TYPE, HttpHeaderValues.APPLICATION_JSON);
        }
        channel.writeAndFlush(request);
        final FullHttpResponse response;
        try
        {
            response = answer.get(Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime())),
                TimeUnit.MILLISECONDS);
        }
        catch (final TimeoutException e)
        {
            channel.close();
            throw new CtlException(ExitCodes.UNREACHABLE, "egressd at " + socket + " did not answer " + method + " "
                + uri + " within " + timeoutMillis + " ms");
        }
        catch (final ExecutionException e)
        {
            throw new CtlException(ExitCodes.UNREACHABLE, "egressd at " + socket + " closed the connection without "
                + "an answer to " + method + " " + uri + " (" + describe(e.getCause()) + ")");
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            throw new CtlException(ExitCodes.UNREACHABLE, "interrupted");
        }
        try
        {
            return new Answer(response.status().code(),
                response.headers().get(HttpHeaderNames.CONTENT_TYPE, ""), ByteBufUtil.getBytes(response.content()));
        }
        finally
        {
            response.release();
        }
    }

    private CtlException connectFailure(final Throwable cause)
    {
        final String text = describe(cause);
        final String lower = text.toLowerCase(Locale.ROOT);
        if (lower.contains("permission denied") || lower.contains("eacces") || !Files.isWritable(socket))
        {
            return new CtlException(ExitCodes.PERMISSION, "permission denied on " + socket
                + ": only root and the configured api-group may use the egressd API");
        }
        if (lower.contains("refused"))
        {
            return new CtlException(ExitCodes.UNREACHABLE, "cannot reach egressd at " + socket
                + ": connection refused (a stale socket: is egressd running?)");
        }
        return new CtlException(ExitCodes.UNREACHABLE, "cannot reach egressd at " + socket + ": " + text);
    }

    private static String describe(final Throwable t)
    {
        if (t == null)
        {
            return "unknown error";
        }
        return t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage();
    }

    @Override
    public void close()
    {
        if (group != null)
        {
            group.shutdownGracefully(0, 0, TimeUnit.MILLISECONDS);
        }
    }
}
