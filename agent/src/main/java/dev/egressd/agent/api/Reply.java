package dev.egressd.agent.api;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectWriter;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpVersion;

import java.nio.charset.StandardCharsets;

/**
 * One answer of {@link ApiHandler}, on the API socket or on {@code metrics-listen}.
 *
 * @param status the HTTP status.
 * @param body   a JSON body (a Jackson tree or a view), or the Prometheus scrape as text.
 */
record Reply(int status, Object body)
{
    /** The answers' writer, made once: a writer per answer cost each one its construction. */
    private static final ObjectWriter PRETTY = Body.MAPPER.writerWithDefaultPrettyPrinter();
    /** The newline after every body (only read: a wrapped buffer never writes into it). */
    private static final byte[] NEWLINE = {'\n'};

    /**
     * The answer's bytes and content type: a text body as the Prometheus text format, anything else as
     * pretty-printed JSON, each followed by a newline.
     *
     * @param bytes the body.
     * @param type  its content type.
     */
    record Encoded(byte[] bytes, String type)
    {
    }

    /**
     * Serialises the body ({@link Encoded}).
     *
     * @return the body's bytes and type.
     */
    Encoded encode()
    {
        if (body instanceof String text)
        {
            return new Encoded(text.getBytes(StandardCharsets.UTF_8), "text/plain; version=0.0.4; charset=utf-8");
        }
        try
        {
            return new Encoded(PRETTY.writeValueAsBytes(body), "application/json");
        }
        catch (final JsonProcessingException e)
        {
            throw new IllegalStateException(e);
        }
    }

    /**
     * Writes the answer ({@link #encode}). The caller closes the connection after it when it is not kept alive.
     *
     * @param ctx       the connection.
     * @param keepAlive whether the connection stays open (else the answer says {@code Connection: close}).
     * @return the write.
     */
    ChannelFuture writeTo(final ChannelHandlerContext ctx, final boolean keepAlive)
    {
        return writeTo(ctx, keepAlive, encode());
    }

    /**
     * Writes the answer already serialised.
     *
     * @param ctx       the connection.
     * @param keepAlive whether the connection stays open (else the answer says {@code Connection: close}).
     * @param encoded   the body, from {@link #encode}.
     * @return the write.
     */
    ChannelFuture writeTo(final ChannelHandlerContext ctx, final boolean keepAlive, final Encoded encoded)
    {
        final FullHttpResponse response = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1,
            HttpResponseStatus.valueOf(status), Unpooled.wrappedBuffer(encoded.bytes(), NEWLINE));
        response.headers().set(HttpHeaderNames.CONTENT_TYPE, encoded.type());
        response.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, response.content().readableBytes());
        response.headers().set(HttpHeaderNames.CONNECTION, keepAlive ? HttpHeaderValues.KEEP_ALIVE
            : HttpHeaderValues.CLOSE);
        return ctx.writeAndFlush(response);
    }
}
