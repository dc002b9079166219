package dev.egressd.agent.api;

import dev.egressd.agent.conntrack.ConnectionQueries;
import dev.egressd.agent.reconcile.ControlLoop;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.epoll.EpollServerDomainSocketChannel;
import io.netty.channel.epoll.EpollServerSocketChannel;
import io.netty.channel.unix.DomainSocketAddress;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.timeout.ReadTimeoutHandler;

import java.io.IOException;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.concurrent.Executor;
import java.util.function.Supplier;

/**
 * egressd's one HTTP server, on Netty's epoll transport: the API on its unix domain socket, and the same pipeline
 * on {@code metrics-listen} (TCP) with {@code GET /metrics} as its only route. Both are served by one event loop;
 * scrapes run on the executor given, never on it.
 */
public final class ApiServer implements AutoCloseable
{
    /** The largest request body accepted. */
    public static final int MAX_BODY = 64 * 1024;

    private final EventLoopGroup eventLoops;
    /** Whether {@link #eventLoops} is this server's own (shut down by {@link #close}) or its owner's. */
    private final boolean ownsEventLoops;
    /** The open connections, closed by {@link #close} when the event loop is shared (an own one closes them). */
    private final java.util.Set<Channel> connections = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private final ConnectionLimit apiConnections = new ConnectionLimit(ConnectionLimit.MAX_CONNECTIONS);
    private Channel channel;
    private Channel metricsChannel;
    private volatile PeerPolicy policy;

    /**
     * Creates the server; {@link #start} binds it.
     *
     * @param policy who may connect.
     */
    public ApiServer(final PeerPolicy policy)
    {
        this(policy, new MultiThreadIoEventLoopGroup(1, EpollIoHandler.newFactory()), true);
    }

    /**
     * Creates the server on an event loop it shares with its owner, who shuts it down: the daemon's when its one
     * thread also runs the control loop, so a change's answer is written by the thread that committed it, with no
     * hand-off between threads either way (benchmarks/README.md, "The loop on the event loop").
     *
     * @param policy     who may connect.
     * @param eventLoops the event loop ({@link #eventLoop}); not shut down by {@link #close}.
     */
    public ApiServer(final PeerPolicy policy, final EventLoopGroup eventLoops)
    {
        this(policy, eventLoops, false);
    }

    private ApiServer(final PeerPolicy policy, final EventLoopGroup eventLoops, final boolean owns)
    {
        this.policy = policy;
        this.eventLoops = eventLoops;
        this.ownsEventLoops = owns;
    }

    /**
     * An event loop group of one thread on Netty's epoll transport, the thread a daemon thread of the given name
     * (its first task starts it).
     *
     * @param threadName the thread's name.
     * @return the group; {@code next()} is its one event loop, a {@link java.util.concurrent.ScheduledExecutorService}.
     */
    public static EventLoopGroup eventLoop(final String threadName)
    {
        return new MultiThreadIoEventLoopGroup(1, r ->
        {
            final Thread thread = new Thread(r, threadName);
            thread.setDaemon(true);
            return thread;
        }, EpollIoHandler.newFactory());
    }

    /**
     * Changes who may connect (SIGHUP); applies to new connections.
     *
     * @param policy the new policy.
     */
    public void policy(final PeerPolicy policy)
    {
        this.policy = policy;
    }

    /**
     * The pipeline of one connection: HTTP codec, aggregation, then the peer check on the unix socket (a TCP peer
     * has no credentials, and gets nothing but {@code /metrics}), then the handler.
     *
     * @param peerCheck whether to check the peer's credentials (unix socket).
     * @param handler   makes the connection's handler.
     * @return the initializer.
     */
    private ChannelInitializer<Channel> initializer(final ConnectionLimit limit, final boolean peerCheck,
        final Supplier<ApiHandler> handler)
    {
        return new ChannelInitializer<>()
        {
            @Override
            protected void initChannel(final Channel ch)
            {
                connections.add(ch);
                ch.closeFuture().addListener(f -> connections.remove(ch));
                ch.pipeline().addLast(limit).addLast(new ReadTimeoutHandler(300));
                http(ch.pipeline());
                if (peerCheck)
                {
                    ch.pipeline().addLast(new PeerCheckHandler(policy, PeerCheckHandler::epollPeer));
                }
                ch.pipeline().addLast(handler.get());
            }
        };
    }

    /**
     * Adds the HTTP layer: the codec, JSON bodies for the errors it answers itself, and the aggregation of a
     * request with its body (at most {@link #MAX_BODY}).
     *
     * @param pipeline a connection's pipeline.
     */
    static void http(final ChannelPipeline pipeline)
    {
        pipeline.addLast(new HttpServerCodec())
            .addLast(new HttpErrorBodies())
            .addLast(new HttpObjectAggregator(MAX_BODY));
    }

    /**
     * Binds the socket (replacing a stale one) with mode 0660, group {@code group} if given.
     *
     * @param socket  the socket path.
     * @param group   the api-group, or null.
     * @param loop      the control loop.
     * @param conntrack the live connections ({@code GET /v1/machines/{id}/connections}, the machine view's
     *                  summary), or null without a conntrack monitor.
     * @param version   the version.
     * @param metrics   the metrics scrape, or null.
     * @param metricsExecutor where a scrape runs: not the event loop.
     * @throws IOException if it cannot be bound.
     * @throws InterruptedException if interrupted while binding.
     */
    public void start(final Path socket, final String group, final ControlLoop loop,
        final ConnectionQueries conntrack, final String version, final Supplier<String> metrics,
        final Executor metricsExecutor) throws IOException, InterruptedException
    {
        Files.createDirectories(socket.getParent());
        Files.deleteIfExists(socket);
        channel = new ServerBootstrap().group(eventLoops)
            .channel(EpollServerDomainSocketChannel.class)
            // A client that half-closes after its request (shutdown(SHUT_WR)) still gets its answer.
            .childOption(ChannelOption.ALLOW_HALF_CLOSURE, true)
            .childHandler(initializer(apiConnections, true,
                () -> new ApiHandler(loop, conntrack, version, metrics, metricsExecutor)))
            .bind(new DomainSocketAddress(socket.toFile())).sync().channel();
        Files.setPosixFilePermissions(socket, PosixFilePermissions.fromString("rw-rw----"));
        if (group != null)
        {
            try
            {
                final GroupPrincipal principal = socket.getFileSystem().getUserPrincipalLookupService()
                    .lookupPrincipalByGroupName(group);
                Files.getFileAttributeView(socket, java.nio.file.attribute.PosixFileAttributeView.class)
                    .setGroup(principal);
            }
            catch (final IOException e)
            {
                // Without CAP_CHOWN a process can only give a file to a group it is in (SupplementaryGroups=),
                // and the unit's system call filter must let chown through (SystemCallFilter=@chown).
                org.slf4j.LoggerFactory.getLogger(ApiServer.class).warn("cannot give {} to group {} ({}): only "
                    + "root can connect; add SupplementaryGroups={} to the unit (docs/config.md, api-group)", socket,
                    group, e.toString(), group);
            }
            final Path dir = socket.toAbsolutePath().getParent();
            final var perms = Files.getPosixFilePermissions(dir);
            if (!perms.contains(java.nio.file.attribute.PosixFilePermission.OTHERS_EXECUTE)
                && !perms.contains(java.nio.file.attribute.PosixFilePermission.GROUP_EXECUTE))
            {
                org.slf4j.LoggerFactory.getLogger(ApiServer.class).warn("{} is not traversable by group {} (mode {}): "
                    + "only root can reach {}; make it 0755 (RuntimeDirectoryMode=0755)", dir, group,
                    PosixFilePermissions.toString(perms), socket);
            }
        }
    }

    /**
     * Serves {@code GET /metrics}, and nothing else, on a TCP address ({@code metrics-listen}).
     *
     * @param address         the address and port.
     * @param metrics         the metrics scrape.
     * @param metricsExecutor where a scrape runs: not the event loop.
     * @throws BindException if the address cannot be bound (e.g. in use).
     * @throws InterruptedException if interrupted while binding.
     */
    public void listenMetrics(final InetSocketAddress address, final Supplier<String> metrics,
        final Executor metricsExecutor) throws BindException, InterruptedException
    {
        final ChannelFuture bound = new ServerBootstrap().group(eventLoops)
            .channel(EpollServerSocketChannel.class)
            .option(ChannelOption.SO_REUSEADDR, true) // a restart binds again while old scrapes sit in TIME_WAIT
            .childHandler(initializer(new ConnectionLimit(ConnectionLimit.MAX_CONNECTIONS), false,
                () -> ApiHandler.metricsOnly(metrics, metricsExecutor)))
            .bind(address).await();
        if (!bound.isSuccess())
        {
            final Throwable cause = bound.cause();
            final BindException e = new BindException("metrics-listen " + address.getHostString() + ":"
                + address.getPort() + ": " + reason(cause));
            e.initCause(cause);
            throw e;
        }
        metricsChannel = bound.channel();
    }

    /** The error without Netty's call prefix: "bind(..) failed: Address already in use" becomes "Address already in use". */
    private static String reason(final Throwable cause)
    {
        final String message = String.valueOf(cause.getMessage());
        final int colon = message.indexOf("failed: ");
        return colon >= 0 ? message.substring(colon + "failed: ".length()) : message;
    }

    /**
     * The connections open on the API socket now.
     *
     * @return the count.
     */
    int openConnections()
    {
        return apiConnections.open();
    }

    @Override
    public void close()
    {
        if (metricsChannel != null)
        {
            metricsChannel.close().syncUninterruptibly();
        }
        if (channel != null)
        {
            channel.close().syncUninterruptibly();
        }
        if (ownsEventLoops)
        {
            eventLoops.shutdownGracefully(0, 1, java.util.concurrent.TimeUnit.SECONDS).syncUninterruptibly();
            return;
        }
        // the loop goes on (the control loop's last tasks run on it): no request is taken after the close
        for (final Channel connection : connections)
        {
            connection.close().awaitUninterruptibly(1, java.util.concurrent.TimeUnit.SECONDS);
        }
    }
}
