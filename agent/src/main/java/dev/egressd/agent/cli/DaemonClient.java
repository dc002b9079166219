package dev.egressd.agent.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Timer;
import java.util.TimerTask;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * An HTTP/1.1 client of the egressd API over its unix socket: one connection per request ({@code Connection:
 * close}), as a CLI makes a handful, over the JDK's unix domain {@code SocketChannel} ({@link JdkHttp}): it starts
 * faster than a Netty client would (docs/cli.md gives the figures).
 *
 * <p>Failures map to egressctl's exit codes: no socket, connection refused or no answer in time is
 * {@link ExitCodes#UNREACHABLE}; EACCES on the socket is {@link ExitCodes#PERMISSION}.
 */
final class DaemonClient
{
    /** The largest answer read (a large host's {@code /v1/state} is well below it). */
    static final int MAX_ANSWER = 64 * 1024 * 1024;

    static final ObjectMapper MAPPER = new ObjectMapper();


    /**
     * An answer.
     *
     * @param status      the HTTP status.
     * @param contentType the Content-Type, or "".
     * @param body        the body.
     */
    record Answer(int status, String contentType, byte[] body)
    {
        /** @return the body as text. */
        String text()
        {
            return new String(body, StandardCharsets.UTF_8);
        }

        /**
         * The body as JSON.
         *
         * @return the tree, or a missing node if the body is not JSON.
         */
        JsonNode json()
        {
            try
            {
                final JsonNode node = MAPPER.readTree(body);
                return node == null ? MAPPER.missingNode() : node;
            }
            catch (final IOException e)
            {
                return MAPPER.missingNode();
            }
        }

        /** @return the error body's {@code error.code}, or "" if there is none. */
        String errorCode()
        {
            return json().path("error").path("code").asText("");
        }

        /** @return the error body's {@code error.message}, or the body itself. */
        String errorMessage()
        {
            final JsonNode message = json().path("error").path("message");
            return message.isTextual() ? message.asText() : text().strip();
        }
    }

    private final Path socket;
    private final long timeoutMillis;

    /**
     * Creates a client; nothing is opened until the first request.
     *
     * @param socket        the API socket.
     * @param timeoutMillis how long one request may take, connect to last byte.
     */
    DaemonClient(final Path socket, final long timeoutMillis)
    {
        this.socket = socket;
        this.timeoutMillis = timeoutMillis;
    }

    /**
     * Sends one request and waits for its answer.
     *
     * @param method the method.
     * @param uri    the path and query, e.g. {@code /v1/state}.
     * @param body   a JSON body, or null.
     * @return the answer, whatever its status.
     * @throws CtlException exit 3 when the daemon cannot be reached, 4 when the socket refuses us.
     */
    Answer send(final String method, final String uri, final String body) throws CtlException
    {
        if (!Files.exists(socket))
        {
            throw new CtlException(ExitCodes.UNREACHABLE, "cannot reach egressd: no socket at " + socket
                + " (is egressd running? --socket or EGRESSD_SOCKET name another)");
        }
        final byte[] bytes = body == null ? new byte[0] : body.getBytes(StandardCharsets.UTF_8);
        final Thread caller = Thread.currentThread();
        final AtomicBoolean timedOut = new AtomicBoolean();
        final Timer timer = new Timer("egressctl-timeout", true);
        timer.schedule(new TimerTask()
        {
            @Override
            public void run()
            {
                timedOut.set(true);
                caller.interrupt();
            }
        }, timeoutMillis);
        try
        {
            return JdkHttp.exchange(socket, method, uri, bytes, body != null, MAX_ANSWER);
        }
        catch (final IOException e)
        {
            if (timedOut.get())
            {
                throw new CtlException(ExitCodes.UNREACHABLE, "egressd at " + socket + " did not answer " + method
                    + " " + uri + " within " + timeoutMillis + " ms");
            }
            throw failure(method, uri, e);
        }
        finally
        {
            timer.cancel();
            Thread.interrupted();
        }
    }

    private CtlException failure(final String method, final String uri, final Exception e)
    {
        final String text = describe(e);
        final String lower = text.toLowerCase(Locale.ROOT);
        if (lower.contains("permission denied") || lower.contains("eacces") || !Files.isWritable(socket))
        {
            return new CtlException(ExitCodes.PERMISSION, "permission denied on " + socket
                + ": only root and the configured api-group may use the egressd API");
        }
        if (lower.contains("refused"))
        {
            return new CtlException(ExitCodes.UNREACHABLE, "cannot reach egressd at " + socket
                + ": connection refused (a stale socket: is egressd running?)");
        }
        return new CtlException(ExitCodes.UNREACHABLE, "egressd at " + socket + " gave no answer to " + method
            + " " + uri + ": " + text);
    }

    private static String describe(final Throwable t)
    {
        if (t == null)
        {
            return "unknown error";
        }
        return t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage();
    }
}
