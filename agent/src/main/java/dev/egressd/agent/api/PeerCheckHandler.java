package dev.egressd.agent.api;

import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.unix.PeerCredentials;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpRequest;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.util.ReferenceCountUtil;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.charset.StandardCharsets;
import java.util.function.Function;

/**
 * Lets only allowed peers talk to the API: the peer's uid and gid come from the socket (SO_PEERCRED); anyone else
 * gets one 403 and the connection is closed.
 */
public final class PeerCheckHandler extends ChannelInboundHandlerAdapter
{
    private static final Logger LOG = LoggerFactory.getLogger(PeerCheckHandler.class);

    /** A peer's identity. */
    public record Peer(int pid, int uid, int gid)
    {
    }

    private final PeerPolicy policy;
    private final Function<Channel, Peer> credentials;
    private Boolean allowed;
    private Peer peer;

    /**
     * Creates the handler.
     *
     * @param policy      who is allowed; read on every connection, so SIGHUP can change it.
     * @param credentials how to read the peer's credentials (the epoll channel's, or a test's); null when the peer
     *                    has gone.
     */
    public PeerCheckHandler(final PeerPolicy policy, final Function<Channel, Peer> credentials)
    {
        this.policy = policy;
        this.credentials = credentials;
    }

    /**
     * Reads credentials from an epoll unix socket channel.
     *
     * @param channel the channel.
     * @return the peer, or null when the peer has already gone (its credentials can no longer be read).
     */
    public static Peer epollPeer(final Channel channel)
    {
        try
        {
            final PeerCredentials c = ((io.netty.channel.epoll.EpollDomainSocketChannel)channel).peerCredentials();
            return new Peer(c.pid(), c.uid(), c.gids().length > 0 ? c.gids()[0] : -1);
        }
        catch (final java.io.IOException e)
        {
            LOG.debug("cannot read the peer's credentials: {}", e.toString());
            return null;
        }
    }

    @Override
    public void channelRead(final ChannelHandlerContext ctx, final Object msg)
    {
        if (allowed == null)
        {
            peer = ctx.channel().isActive() ? credentials.apply(ctx.channel()) : null;
            if (peer == null)
            {
                // A peer that hung up (often before finishing its headers) has no credentials left to check; it
                // was refused nothing, so nothing is logged above debug and nothing is answered.
                LOG.debug("API: peer gone before its credentials were read");
                ReferenceCountUtil.release(msg);
                ctx.close();
                return;
            }
            allowed = policy.allows(peer.uid(), peer.gid());
            if (!allowed)
            {
                LOG.warn("API: refused peer pid {} uid {} gid {}", peer.pid(), peer.uid(), peer.gid());
            }
        }
        if (allowed)
        {
            ctx.fireChannelRead(msg);
            return;
        }
        ReferenceCountUtil.release(msg);
        if (msg instanceof HttpRequest)
        {
            final byte[] body = ("{\"error\": {\"code\": \"forbidden\", \"message\": \"uid " + peer.uid()
                + " may not use the egressd API (root or the configured api-group only)\", \"field\": null}}\n")
                .getBytes(StandardCharsets.UTF_8);
            final FullHttpResponse response = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1,
                HttpResponseStatus.FORBIDDEN, Unpooled.wrappedBuffer(body));
            response.headers().set(HttpHeaderNames.CONTENT_TYPE, "application/json");
            response.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, body.length);
            response.headers().set(HttpHeaderNames.CONNECTION, "close");
            ctx.writeAndFlush(response).addListener(ChannelFutureListener.CLOSE);
        }
    }
}
