package dev.egressd.agent.testing;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.function.Predicate;

/**
 * A minimal HTTP/1.1 client for egressd's API on its unix socket: one request per connection
 * ({@code Connection: close}), the answer read to the end. Test code only; a person uses
 * {@code curl --unix-socket}.
 */
public final class ApiClient
{
    public static final ObjectMapper JSON = new ObjectMapper();
    /** How long {@link #await} waits: generous, for a loaded CI machine and etcd's first election. */
    public static final Duration AWAIT = Duration.ofSeconds(30);

    private final Path socket;

    public ApiClient(final Path socket)
    {
        this.socket = socket;
    }

    /** An answer: the status and the body, parsed when it is JSON. */
    public record Response(int status, String text, JsonNode json)
    {
        /**
         * Fails unless the status is 200.
         *
         * @return this.
         */
        public Response ok()
        {
            if (status != 200)
            {
                throw new AssertionError("expected 200, got " + status + ": " + text);
            }
            return this;
        }

        @Override
        public String toString()
        {
            return status + " " + text.strip();
        }
    }

    /**
     * GETs a path every 50 ms until its answer is 200 and meets a condition: what a test waits for when the daemon
     * gets there on its own (a region read, a router's confirmation).
     *
     * @param path      the path, e.g. {@code /v1/region}.
     * @param condition what the answer's JSON must meet.
     * @param what      what is awaited, for the failure.
     * @return the answer's JSON that met it.
     * @throws IOException          if the socket cannot be reached.
     * @throws InterruptedException if interrupted.
     * @throws AssertionError       if no answer met it within {@link #AWAIT}; it holds the last answer.
     */
    public JsonNode await(final String path, final Predicate<JsonNode> condition, final String what)
        throws IOException, InterruptedException
    {
        final long end = System.nanoTime() + AWAIT.toNanos();
        JsonNode last = null;
        while (System.nanoTime() < end)
        {
            final Response r = get(path);
            last = r.json();
            if (r.status() == 200 && condition.test(last))
            {
                return last;
            }
            Thread.sleep(50);
        }
        throw new AssertionError(what + ": last answer " + last);
    }

    public Response get(final String path) throws IOException
    {
        return call("GET", path, null);
    }

    public Response put(final String path, final String body) throws IOException
    {
        return call("PUT", path, body);
    }

    public Response post(final String path, final String body) throws IOException
    {
        return call("POST", path, body);
    }

    public Response delete(final String path) throws IOException
    {
        return call("DELETE", path, null);
    }

    /**
     * Sends one request and reads the whole answer.
     *
     * @param method the method.
     * @param path   the path, e.g. {@code /v1/state}.
     * @param body   a JSON body, or null.
     * @return the answer.
     * @throws IOException if the socket cannot be reached or the answer is cut off (e.g. the daemon was killed).
     */
    public Response call(final String method, final String path, final String body) throws IOException
    {
        final byte[] payload = body == null ? new byte[0] : body.getBytes(StandardCharsets.UTF_8);
        final String head = method + " " + path + " HTTP/1.1\r\nHost: egressd\r\nConnection: close\r\n"
            + (payload.length > 0 ? "Content-Type: application/json\r\n" : "")
            + "Content-Length: " + payload.length + "\r\n\r\n";
        try (SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX))
        {
            channel.connect(UnixDomainSocketAddress.of(socket));
            final byte[] headBytes = head.getBytes(StandardCharsets.US_ASCII);
            final ByteBuffer out = ByteBuffer.allocate(headBytes.length + payload.length);
            out.put(headBytes).put(payload).flip();
            while (out.hasRemaining())
            {
                channel.write(out);
            }
            final ByteArrayOutputStream all = new ByteArrayOutputStream();
            final ByteBuffer in = ByteBuffer.allocate(16384);
            while (channel.read(in) >= 0)
            {
                in.flip();
                all.write(in.array(), 0, in.limit());
                in.clear();
            }
            return parse(all.toString(StandardCharsets.UTF_8));
        }
    }

    private static Response parse(final String raw) throws IOException
    {
        final int end = raw.indexOf("\r\n\r\n");
        if (!raw.startsWith("HTTP/1.1 ") || end < 0)
        {
            throw new IOException("no HTTP answer (" + raw.length() + " bytes): " + raw);
        }
        final String[] headLines = raw.substring(0, end).split("\r\n");
        final int status = Integer.parseInt(headLines[0].split(" ")[1]);
        int length = -1;
        boolean json = false;
        for (final String line : headLines)
        {
            final String lower = line.toLowerCase(java.util.Locale.ROOT);
            if (lower.startsWith("content-length:"))
            {
                length = Integer.parseInt(line.substring(15).trim());
            }
            else if (lower.startsWith("content-type:") && lower.contains("json"))
            {
                json = true;
            }
        }
        final byte[] rest = raw.substring(end + 4).getBytes(StandardCharsets.UTF_8);
        if (length >= 0 && rest.length < length)
        {
            throw new IOException("answer cut off: " + rest.length + " of " + length + " bytes");
        }
        final String text = new String(rest, 0, length >= 0 ? length : rest.length, StandardCharsets.UTF_8);
        return new Response(status, text, json ? JSON.readTree(text) : null);
    }
}
