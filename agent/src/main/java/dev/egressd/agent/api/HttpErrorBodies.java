package dev.egressd.agent.api;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelOutboundHandlerAdapter;
import io.netty.channel.ChannelPromise;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Locale;

/**
 * Gives the answers the HTTP layer writes on its own ({@code 413} for a body over the limit, {@code 417} for an
 * unknown {@code Expect}) the same {@code {"error": {...}}} body as every other error of the API. It sits between
 * the codec and the aggregator, so it sees only what the aggregator writes; the handler's answers already have
 * their bodies.
 */
final class HttpErrorBodies extends ChannelOutboundHandlerAdapter
{
    @Override
    public void write(final ChannelHandlerContext ctx, final Object msg, final ChannelPromise promise)
    {
        if (msg instanceof FullHttpResponse response && response.status().code() >= 400
            && !response.content().isReadable())
        {
            final FullHttpResponse json = new DefaultFullHttpResponse(response.protocolVersion(), response.status(),
                body(response.status().code(), response.status().reasonPhrase()));
            json.headers().set(response.headers());
            json.headers().set(HttpHeaderNames.CONTENT_TYPE, "application/json");
            json.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, json.content().readableBytes());
            response.release();
            ctx.write(json, promise);
            return;
        }
        ctx.write(msg, promise);
    }

    private static ByteBuf body(final int status, final String reason)
    {
        final String code = switch (status)
        {
            case 413 -> "too_large";
            case 417 -> "expectation_failed";
            default -> reason.toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9]+", "_");
        };
        final String message = switch (status)
        {
            case 413 -> "the request body is over " + ApiServer.MAX_BODY + " bytes; nothing was done";
            case 417 -> "only Expect: 100-continue is understood; nothing was done";
            default -> reason;
        };
        final ByteArrayOutputStream out = new ByteArrayOutputStream();
        try
        {
            Body.MAPPER.writerWithDefaultPrettyPrinter().writeValue(out, ApiHandler.error(
                new ApiException(status, code, null, message)).body());
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
        out.write('\n');
        return io.netty.buffer.Unpooled.wrappedBuffer(out.toByteArray());
    }
}
