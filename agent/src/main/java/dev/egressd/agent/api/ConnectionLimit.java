package dev.egressd.agent.api;

import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * Bounds the connections one listener holds at once: each open connection holds buffers and up to
 * {@link ApiHandler#MAX_PIPELINED} waiting requests, so without a bound enough idle or unread connections would grow
 * the heap without limit. A connection over the limit is closed at once, before anything is read from it.
 */
@ChannelHandler.Sharable
final class ConnectionLimit extends ChannelInboundHandlerAdapter
{
    /**
     * Connections per listener. An orchestrator and a few egressctl runs need a handful; 256 leaves room for bursts
     * while bounding the memory held by clients that connect and never finish (docs/api.md, Limits).
     */
    static final int MAX_CONNECTIONS = 256;

    private static final Logger LOG = LoggerFactory.getLogger(ConnectionLimit.class);

    private final int max;
    private final AtomicInteger open = new AtomicInteger();
    private final AtomicInteger refused = new AtomicInteger();

    ConnectionLimit(final int max)
    {
        this.max = max;
    }

    @Override
    public void channelActive(final ChannelHandlerContext ctx) throws Exception
    {
        if (open.incrementAndGet() > max)
        {
            // Logged once per burst, not per connection: a flood must not flood the journal too.
            if (refused.getAndIncrement() == 0)
            {
                LOG.warn("API: {} connections already open, closing new ones until some close", max);
            }
            ctx.close();
            return;
        }
        super.channelActive(ctx);
    }

    @Override
    public void channelInactive(final ChannelHandlerContext ctx) throws Exception
    {
        if (open.decrementAndGet() < max)
        {
            refused.set(0);
        }
        super.channelInactive(ctx);
    }

    /**
     * The connections counted as open now.
     *
     * @return the count.
     */
    int open()
    {
        return open.get();
    }
}
