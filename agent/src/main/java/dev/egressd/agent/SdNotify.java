package dev.egressd.agent;

import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.epoll.EpollDomainDatagramChannel;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.unix.DomainDatagramPacket;
import io.netty.channel.unix.DomainSocketAddress;
import io.netty.bootstrap.Bootstrap;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelInboundHandlerAdapter;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.charset.StandardCharsets;

/**
 * systemd's notify protocol (sd_notify(3)): datagrams such as {@code READY=1}, {@code STATUS=...},
 * {@code WATCHDOG=1}, {@code RELOADING=1}, {@code STOPPING=1} to the unix socket named by {@code $NOTIFY_SOCKET}.
 * Does nothing when the variable is unset (not started by systemd).
 */
public final class SdNotify implements AutoCloseable
{
    private static final Logger LOG = LoggerFactory.getLogger(SdNotify.class);

    private final DomainSocketAddress target;
    private EventLoopGroup group;
    private Channel channel;

    /**
     * Connects to {@code $NOTIFY_SOCKET}, if set.
     *
     * @param notifySocket the variable's value, or null.
     */
    public SdNotify(final String notifySocket)
    {
        if (notifySocket == null || notifySocket.isEmpty())
        {
            target = null;
            return;
        }
        if (notifySocket.startsWith("@"))
        {
            // An abstract socket: Netty addresses sockets by path only. systemd itself uses /run/systemd/notify.
            LOG.warn("NOTIFY_SOCKET {} is an abstract socket, which egressd cannot reach; no READY/WATCHDOG",
                notifySocket);
            target = null;
            return;
        }
        target = new DomainSocketAddress(notifySocket);
        try
        {
            group = new MultiThreadIoEventLoopGroup(1, EpollIoHandler.newFactory());
            channel = new Bootstrap().group(group).channel(EpollDomainDatagramChannel.class)
                .handler(new ChannelInitializer<>()
                {
                    @Override
                    protected void initChannel(final Channel ch)
                    {
                        ch.pipeline().addLast(new ChannelInboundHandlerAdapter());
                    }
                })
                .register().syncUninterruptibly().channel();
        }
        catch (final RuntimeException | LinkageError e)
        {
            LOG.warn("cannot open the systemd notify socket {}: {}", notifySocket, e.toString());
            channel = null;
        }
    }

    /**
     * Whether notifications go anywhere.
     *
     * @return true when started by systemd with a usable socket.
     */
    public boolean enabled()
    {
        return channel != null;
    }

    /**
     * Sends one notification, e.g. {@code READY=1\nSTATUS=serving}.
     *
     * @param state the newline-separated assignments.
     */
    public void notify(final String state)
    {
        if (channel == null)
        {
            return;
        }
        channel.writeAndFlush(new DomainDatagramPacket(
            Unpooled.wrappedBuffer(state.getBytes(StandardCharsets.UTF_8)), target))
            .addListener(f ->
            {
                if (!f.isSuccess())
                {
                    LOG.warn("sd_notify {} failed: {}", state.replace('\n', ' '), f.cause().toString());
                }
            });
    }

    @Override
    public void close()
    {
        if (channel != null)
        {
            channel.close().syncUninterruptibly();
            group.shutdownGracefully(0, 1, java.util.concurrent.TimeUnit.SECONDS).syncUninterruptibly();
        }
    }
}
