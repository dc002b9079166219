package dev.egressd.agent.cli;

import io.netty.bootstrap.Bootstrap;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
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
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The same exchange as {@link JdkHttp} on Netty's epoll domain socket channel ({@code EpollDomainSocketChannel} +
 * {@code HttpClientCodec} + {@code HttpObjectAggregator}). Not the default: loading Netty and its native transport
 * adds 0.2-0.4 s to every egressctl run (docs/cli.md); chosen with {@code -Degressctl.transport=netty}.
 */
final class NettyHttp implements AutoCloseable
{
    static
    {
        // Keep Netty away from logback (whose default configuration logs DEBUG to stdout).
        InternalLoggerFactory.setDefaultFactory(JdkLoggerFactory.INSTANCE);
    }

    private final EventLoopGroup group = new MultiThreadIoEventLoopGroup(1, EpollIoHandler.newFactory());

    DaemonClient.Answer exchange(final Path socket, final String method, final String uri, final byte[] body,
        final boolean json, final int maxBytes, final long timeoutMillis)
        throws IOException, TimeoutException, InterruptedException
    {
        final CompletableFuture<FullHttpResponse> answer = new CompletableFuture<>();
        final Bootstrap bootstrap = new Bootstrap().group(group).channel(EpollDomainSocketChannel.class)
            .option(ChannelOption.CONNECT_TIMEOUT_MILLIS, (int)Math.min(Integer.MAX_VALUE, timeoutMillis))
            .handler(new ChannelInitializer<Channel>()
            {
                @Override
                protected void initChannel(final Channel ch)
                {
                    ch.pipeline().addLast(new HttpClientCodec())
                        .addLast(new HttpObjectAggregator(maxBytes))
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
        final ChannelFuture connect = bootstrap.connect(new DomainSocketAddress(socket.toFile()));
        if (!connect.await(timeoutMillis))
        {
            connect.cancel(false);
            throw new TimeoutException("no connection within " + timeoutMillis + " ms");
        }
        if (!connect.isSuccess())
        {
            final Throwable cause = connect.cause();
            throw cause instanceof IOException io ? io : new IOException(cause.getMessage(), cause);
        }
        final Channel channel = connect.channel();
        final FullHttpRequest request = new DefaultFullHttpRequest(HttpVersion.HTTP_1_1, HttpMethod.valueOf(method),
            uri, Unpooled.wrappedBuffer(body));
        request.headers().set(HttpHeaderNames.HOST, "egressd");
        request.headers().set(HttpHeaderNames.USER_AGENT, "egressctl");
        request.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE);
        request.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, body.length);
        if (json)
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
            throw e;
        }
        catch (final ExecutionException e)
        {
            final Throwable cause = e.getCause();
            throw new IOException(cause.getMessage() == null ? cause.getClass().getSimpleName() : cause.getMessage(),
                cause);
        }
        try
        {
            return new DaemonClient.Answer(response.status().code(),
                response.headers().get(HttpHeaderNames.CONTENT_TYPE, ""), ByteBufUtil.getBytes(response.content()));
        }
        finally
        {
            response.release();
        }
    }

    @Override
    public void close()
    {
        group.shutdownGracefully(0, 0, TimeUnit.MILLISECONDS);
    }
}
