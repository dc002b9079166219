package dev.egressd.agent.cli;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Locale;

/**
 * A minimal HTTP/1.1 exchange over a JDK 17 unix domain {@link SocketChannel}: one request with
 * {@code Connection: close}, the answer read to its Content-Length (or chunked, or to EOF).
 */
final class JdkHttp
{
    private JdkHttp()
    {
    }

    /**
     * Sends one request and reads its answer.
     *
     * @param socket   the unix socket.
     * @param method   the method.
     * @param uri      the path and query.
     * @param body     the body bytes (may be empty).
     * @param json     whether to send {@code Content-Type: application/json}.
     * @param maxBytes the largest answer accepted.
     * @return the answer.
     * @throws IOException on connect, read or protocol errors.
     */
    static DaemonClient.Answer exchange(final Path socket, final String method, final String uri, final byte[] body,
        final boolean json, final int maxBytes) throws IOException
    {
        try (SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX))
        {
            channel.connect(UnixDomainSocketAddress.of(socket));
            final String head = method + " " + uri + " HTTP/1.1\r\nHost: egressd\r\nUser-Agent: egressctl\r\n"
                + "Connection: close\r\nContent-Length: " + body.length + "\r\n"
                + (json ? "Content-Type: application/json\r\n" : "") + "\r\n";
            final ByteBuffer out = ByteBuffer.allocate(head.length() + body.length);
            out.put(head.getBytes(StandardCharsets.US_ASCII)).put(body).flip();
            while (out.hasRemaining())
            {
                channel.write(out);
            }
            final java.io.InputStream in = new java.io.BufferedInputStream(Channels.newInputStream(channel));
            final String status = line(in);
            final String[] parts = status.split(" ", 3);
            if (parts.length < 2 || !parts[0].startsWith("HTTP/1."))
            {
                throw new IOException("not an HTTP answer: " + status);
            }
            final int code;
            try
            {
                code = Integer.parseInt(parts[1]);
            }
            catch (final NumberFormatException e)
            {
                throw new IOException("not an HTTP status: " + status, e);
            }
            long length = -1;
            boolean chunked = false;
            String type = "";
            for (String h = line(in); !h.isEmpty(); h = line(in))
            {
                final int colon = h.indexOf(':');
                if (colon <= 0)
                {
                    throw new IOException("bad header line: " + h);
                }
                final String name = h.substring(0, colon).trim().toLowerCase(Locale.ROOT);
                final String value = h.substring(colon + 1).trim();
                switch (name)
                {
                    case "content-length" -> length = Long.parseLong(value);
                    case "transfer-encoding" -> chunked = value.toLowerCase(Locale.ROOT).contains("chunked");
                    case "content-type" -> type = value;
                    default ->
                    {
                    }
                }
            }
            final ByteArrayOutputStream content = new ByteArrayOutputStream();
            if (chunked)
            {
                for (long size = chunk(in); size > 0; size = chunk(in))
                {
                    copy(in, content, size, maxBytes);
                    line(in);
                }
            }
            else if (length >= 0)
            {
                copy(in, content, length, maxBytes);
            }
            else
            {
                copy(in, content, Long.MAX_VALUE, maxBytes);
            }
            return new DaemonClient.Answer(code, type, content.toByteArray());
        }
    }

    private static long chunk(final java.io.InputStream in) throws IOException
    {
        final String size = line(in);
        final int semi = size.indexOf(';');
        try
        {
            return Long.parseLong((semi >= 0 ? size.substring(0, semi) : size).trim(), 16);
        }
        catch (final NumberFormatException e)
        {
            throw new IOException("bad chunk size: " + size, e);
        }
    }

    private static void copy(final java.io.InputStream in, final ByteArrayOutputStream out, final long length,
        final int max) throws IOException
    {
        final byte[] buffer = new byte[8192];
        long left = length;
        while (left > 0)
        {
            final int n = in.read(buffer, 0, (int)Math.min(buffer.length, left));
            if (n < 0)
            {
                if (length == Long.MAX_VALUE)
                {
                    return;
                }
                throw new IOException("the answer ended " + left + " bytes early");
            }
            out.write(buffer, 0, n);
            left -= n;
            if (out.size() > max)
            {
                throw new IOException("the answer is larger than " + max + " bytes");
            }
        }
    }

    private static String line(final java.io.InputStream in) throws IOException
    {
        final StringBuilder b = new StringBuilder();
        for (int c = in.read(); c != '\n'; c = in.read())
        {
            if (c < 0)
            {
                if (b.length() == 0)
                {
                    throw new IOException("the connection closed without an answer");
                }
                break;
            }
            if (b.length() > 16 * 1024)
            {
                throw new IOException("a header line is too long");
            }
            if (c != '\r')
            {
                b.append((char)c);
            }
        }
        return b.toString();
    }
}
