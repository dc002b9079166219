package dev.egressd.agent.cli;

import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.epoll.EpollServerDomainSocketChannel;
import io.netty.channel.unix.DomainSocketAddress;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http.HttpVersion;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A stand-in for egressd's API: a real Netty HTTP/1.1 server on a unix socket that answers canned bodies (captured
 * from a {@code --dry-run} daemon, see src/test/resources/dev/egressd/agent/cli) by "METHOD URI", and 404
 * {@code not_found} for anything else, as ApiHandler does.
 */
final class FakeDaemon implements AutoCloseable
{
    /** A canned answer. */
    record Canned(int status, String contentType, String body)
    {
    }

    private final EventLoopGroup group = new MultiThreadIoEventLoopGroup(1, EpollIoHandler.newFactory());
    private final Map<String, Canned> routes = new ConcurrentHashMap<>();
    /** Every request seen, as "METHOD URI" (then " BODY" if it had one). */
    final List<String> requests = new CopyOnWriteArrayList<>();
    final Path socket;
    private final Channel channel;
    private volatile boolean silent;

    FakeDaemon(final Path socket) throws InterruptedException
    {
        this.socket = socket;
        channel = new ServerBootstrap().group(group).channel(EpollServerDomainSocketChannel.class)
            .childHandler(new ChannelInitializer<Channel>()
            {
                @Override
                protected void initChannel(final Channel ch)
                {
                    ch.pipeline().addLast(new HttpServerCodec()).addLast(new HttpObjectAggregator(1 << 20))
                        .addLast(new SimpleChannelInboundHandler<FullHttpRequest>()
                        {
                            @Override
                            protected void channelRead0(final ChannelHandlerContext ctx, final FullHttpRequest r)
                            {
                                answer(ctx, r);
                            }
                        });
                }
            }).bind(new DomainSocketAddress(socket.toFile())).sync().channel();
    }

    /** Answers 200 with a JSON resource's content. */
    FakeDaemon json(final String method, final String uri, final String resource)
    {
        return answer(method, uri, 200, resource(resource));
    }

    /** Answers the given status and JSON body. */
    FakeDaemon answer(final String method, final String uri, final int status, final String body)
    {
        routes.put(method + " " + uri, new Canned(status, "application/json", body));
        return this;
    }

    /** Answers 200 with plain text (the Prometheus scrape). */
    FakeDaemon text(final String method, final String uri, final String body)
    {
        routes.put(method + " " + uri, new Canned(200, "text/plain; version=0.0.4; charset=utf-8", body));
        return this;
    }

    /** Answers an error body as the daemon writes it. */
    FakeDaemon error(final String method, final String uri, final int status, final String code, final String field,
        final String message)
    {
        return answer(method, uri, status, "{\n  \"error\" : {\n    \"code\" : \"" + code + "\",\n    \"message\" : \""
            + message + "\",\n    \"field\" : " + (field == null ? "null" : "\"" + field + "\"") + "\n  }\n}\n");
    }

    /** Answers every request with 403, as PeerCheckHandler does for a peer that is not allowed. */
    FakeDaemon forbidAll()
    {
        routes.put("*", new Canned(403, "application/json", "{\"error\": {\"code\": \"forbidden\", \"message\": "
            + "\"uid 1000 may not use the egressd API (root or the configured api-group only)\", \"field\": null}}\n"));
        return this;
    }

    /** Accepts connections and never answers. */
    FakeDaemon silent()
    {
        silent = true;
        return this;
    }

    static String resource(final String name)
    {
        try (InputStream in = FakeDaemon.class.getResourceAsStream(name))
        {
            if (in == null)
            {
                throw new IllegalArgumentException("no test resource " + name);
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }

    private void answer(final ChannelHandlerContext ctx, final FullHttpRequest request)
    {
        final String body = request.content().toString(StandardCharsets.UTF_8);
        requests.add(request.method().name() + " " + request.uri() + (body.isEmpty() ? "" : " " + body));
        if (silent)
        {
            return;
        }
        Canned canned = routes.get("*");
        if (canned == null)
        {
            canned = routes.get(request.method().name() + " " + request.uri());
        }
        if (canned == null)
        {
            canned = new Canned(404, "application/json", "{\n  \"error\" : {\n    \"code\" : \"not_found\",\n"
                + "    \"message\" : \"no such path: " + request.uri().replaceAll("\\?.*", "") + "\",\n"
                + "    \"field\" : null\n  }\n}\n");
        }
        final byte[] bytes = canned.body().getBytes(StandardCharsets.UTF_8);
        final FullHttpResponse response = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1,
            HttpResponseStatus.valueOf(canned.status()), Unpooled.wrappedBuffer(bytes));
        response.headers().set(HttpHeaderNames.CONTENT_TYPE, canned.contentType());
        response.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, bytes.length);
        ctx.writeAndFlush(response).addListener(ChannelFutureListener.CLOSE);
    }

    @Override
    public void close()
    {
        channel.close().syncUninterruptibly();
        group.shutdownGracefully(0, 0, java.util.concurrent.TimeUnit.MILLISECONDS).syncUninterruptibly();
    }
}
