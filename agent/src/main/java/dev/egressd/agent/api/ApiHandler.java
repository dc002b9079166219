package dev.egressd.agent.api;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.egressd.agent.conntrack.ConnectionQueries;
import dev.egressd.agent.conntrack.ConntrackTable;
import dev.egressd.agent.reconcile.ControlLoop;
import dev.egressd.agent.reconcile.Health;
import dev.egressd.agent.reconcile.KernelStatus;
import dev.egressd.agent.reconcile.MutationResult;
import dev.egressd.agent.reconcile.Operation;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.alloc.RequestText;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import io.netty.buffer.ByteBufUtil;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.socket.ChannelInputShutdownEvent;
import io.netty.handler.codec.DecoderResult;
import io.netty.handler.codec.PrematureChannelClosureException;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.QueryStringDecoder;
import io.netty.handler.timeout.ReadTimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.function.Supplier;

/**
 * The control-plane API: HTTP/1.1 + JSON. A connection's requests are executed and answered one at a time, in the
 * order they came (pipelining), with at most {@link #MAX_PIPELINED} held. Every mutation goes through the
 * {@link ControlLoop}, so its answer leaves only after the kernel holds the change.
 *
 * <p>Errors are {@code {"error": {"code", "message", "field"}}}: 400 malformed JSON, unknown field, wrong type,
 * bad value, broken HTTP framing, a bad percent-escape; 404 unknown app, machine or pair; 409 address in use, pair
 * full or drained, foreign pin; 422 wrong family or region; 429 too many pipelined; 503 the kernel cannot be
 * programmed. Nothing changes on any error.
 */
public final class ApiHandler extends SimpleChannelInboundHandler<FullHttpRequest>
{
    private static final Logger LOG = LoggerFactory.getLogger(ApiHandler.class);
    /** For {@link RequestEvent#writeCpu}, read only while a recording asks for the event. */
    private static final java.lang.management.ThreadMXBean THREADS =
        java.lang.management.ManagementFactory.getThreadMXBean();
    private static final Set<String> PAIR_FIELDS = Set.of("ipv4", "ipv6", "region");
    private static final Set<String> APP_FIELDS = Set.of("fail_closed");
    private static final Set<String> MACHINE_FIELDS = Set.of("app", "interface", "ipv4", "ipv6", "pin", "from_host");
    private static final Set<String> HOST_DELETE_FIELDS = Set.of("fenced");
    private static final Set<String> EGRESS_FIELDS = Set.of("ipv4", "ipv6");
    /** Destinations listed by {@code GET /v1/machines/{id}/connections} without {@code ?top=}. */
    static final int DEFAULT_TOP = 10;
    /** The most destinations {@code ?top=} may ask for. */
    static final int MAX_TOP = 10_000;

    private final ControlLoop loop;
    /** The live connections, or null without a conntrack monitor (the connections route then answers 503). */
    private final ConnectionQueries conntrack;
    private final String version;
    private final Supplier<String> metrics;
    private final Executor metricsExecutor;
    /** False on {@code metrics-listen}: only {@code /metrics} is served there. */
    private final boolean api;

    /**
     * The most requests one connection may have waiting for their answers. Reading stops there (and while the
     * connection is not writable), so a client that never reads its answers holds a bounded amount of memory.
     */
    static final int MAX_PIPELINED = 32;

    /** This connection's requests waiting their turn; only the event loop touches them. */
    private final java.util.ArrayDeque<Request> waiting = new java.util.ArrayDeque<>();
    /** The body bytes in {@link #waiting}. */
    private long queuedBytes;
    /** Whether a request is being answered. */
    private boolean busy;
    /** Whether the peer pipelined past {@link #MAX_PIPELINED}. */
    private boolean overflow;
    /** Whether the connection closes after the request being answered. */
    private boolean closing;
    /** Whether the peer half-closed: close once every request it sent is answered. */
    private boolean inputClosed;

    /**
     * Creates a handler without conntrack: machine views carry no connection summary, and
     * {@code GET /v1/machines/{id}/connections} answers 503.
     *
     * @param loop            the control loop.
     * @param version         the daemon's version, for {@code /v1/health}.
     * @param metrics         the Prometheus scrape text for {@code GET /metrics}, or null when not served here.
     * @param metricsExecutor where a scrape runs (off the event loop).
     */
    public ApiHandler(final ControlLoop loop, final String version, final Supplier<String> metrics,
        final Executor metricsExecutor)
    {
        this(loop, null, version, metrics, metricsExecutor);
    }

    /**
     * Creates the handler.
     *
     * @param loop            the control loop.
     * @param conntrack       the live connections, or null without a conntrack monitor.
     * @param version         the daemon's version, for {@code /v1/health}.
     * @param metrics         the Prometheus scrape text for {@code GET /metrics}, or null when not served here.
     * @param metricsExecutor where a scrape runs: never the Netty event loop, which a scrape (a refresh of every
     *                        per-machine series, then the text) would hold up for every other connection.
     */
    public ApiHandler(final ControlLoop loop, final ConnectionQueries conntrack, final String version,
        final Supplier<String> metrics, final Executor metricsExecutor)
    {
        this(loop, conntrack, version, metrics, metricsExecutor, true);
    }

    private ApiHandler(final ControlLoop loop, final ConnectionQueries conntrack, final String version,
        final Supplier<String> metrics, final Executor metricsExecutor, final boolean api)
    {
        this.loop = loop;
        this.conntrack = conntrack;
        this.version = version;
        this.metrics = metrics;
        this.metricsExecutor = metricsExecutor;
        this.api = api;
    }

    /**
     * A handler that serves {@code GET /metrics} and answers 404 to every other path: {@code metrics-listen}.
     *
     * @param metrics         the Prometheus scrape text.
     * @param metricsExecutor where a scrape runs: never the Netty event loop.
     * @return the handler.
     */
    public static ApiHandler metricsOnly(final Supplier<String> metrics, final Executor metricsExecutor)
    {
        return new ApiHandler(null, null, null, metrics, metricsExecutor, false);
    }

    /**
     * Takes one request off the HTTP layer. Requests are answered one at a time and in the order they came
     * (HTTP/1.1 pipelining): each waits in {@link #waiting} until the answer before it is written.
     */
    @Override
    protected void channelRead0(final ChannelHandlerContext ctx, final FullHttpRequest request)
    {
        if (overflow || closing)
        {
            return; // the connection closes after the answers already queued; nothing more is done on it
        }
        if (held() >= MAX_PIPELINED)
        {
            // Reading stopped at the limit, but one read can still hold more requests: answer what is queued,
            // then say why the rest was dropped, and close. Nothing they asked was done.
            overflow = true;
            waiting.add(Request.tooMany());
        }
        else
        {
            final Request r = Request.of(request);
            waiting.add(r);
            queuedBytes += r.body().length;
        }
        updateReading(ctx);
        next(ctx);
    }

    /** Answers the next waiting request if none is being answered. */
    private void next(final ChannelHandlerContext ctx)
    {
        if (busy || waiting.isEmpty() || !ctx.channel().isActive())
        {
            if (!busy && waiting.isEmpty() && inputClosed && ctx.channel().isActive())
            {
                ctx.close(); // the peer sent all it will send and has every answer
            }
            return;
        }
        final Request request = waiting.poll();
        final long taken = System.nanoTime();
        queuedBytes -= request.body().length;
        busy = true;
        final boolean keepAlive = request.keepAlive() && request.failure() == null && !request.overflow();
        if (!keepAlive)
        {
            closing = true;
        }
        CompletableFuture<Reply> reply;
        try
        {
            reply = dispatch(request);
        }
        catch (final ApiException e)
        {
            reply = CompletableFuture.completedFuture(error(e));
        }
        catch (final RuntimeException e)
        {
            LOG.error("{} {} failed", request.method(), request.uri(), e);
            reply = CompletableFuture.completedFuture(internal(e));
        }
        final long dispatched = System.nanoTime();
        reply.whenComplete((r, failure) ->
        {
            final long done = System.nanoTime();
            final Reply answer;
            if (failure != null)
            {
                LOG.error("{} {} failed", request.method(), request.uri(), failure);
                answer = internal(failure);
            }
            else
            {
                answer = r;
            }
            final long[] stamps = {request.arrived(), taken, dispatched, done};
            if (ctx.executor().inEventLoop())
            {
                written(ctx, answer, keepAlive, request, stamps);
            }
            else
            {
                ctx.executor().execute(() -> written(ctx, answer, keepAlive, request, stamps));
            }
        });
    }

    /**
     * Writes one answer; the next request is taken once it is written (or the connection is closed after it).
     * {@code stamps}: when the request arrived, was taken, dispatched, answered (System.nanoTime).
     */
    private void written(final ChannelHandlerContext ctx, final Reply answer, final boolean keepAlive,
        final Request request, final long[] stamps)
    {
        final long writing = System.nanoTime();
        final RequestEvent event = new RequestEvent();
        // the write's own CPU against its wall time: a write that wakes the client can lose its core to it
        final long cpu = event.isEnabled() ? THREADS.getCurrentThreadCpuTime() : 0;
        final Reply.Encoded encoded = answer.encode();
        final long serialised = System.nanoTime();
        answer.writeTo(ctx, keepAlive, encoded).addListener((ChannelFutureListener)f ->
        {
            if (event.isEnabled())
            {
                event.writeCpu = THREADS.getCurrentThreadCpuTime() - cpu;
                event.method = request.method();
                event.uri = request.uri();
                event.status = answer.status();
                event.queued = stamps[1] - stamps[0];
                event.dispatch = stamps[2] - stamps[1];
                event.waited = stamps[3] - stamps[2];
                event.hop = writing - stamps[3];
                event.serialise = serialised - writing;
                event.write = System.nanoTime() - serialised;
                event.commit();
            }
            busy = false;
            if (!keepAlive || !f.isSuccess())
            {
                waiting.clear();
                queuedBytes = 0;
                ctx.close();
                return;
            }
            updateReading(ctx);
            next(ctx);
        });
    }

    /**
     * Reads only while this connection's queue is short and its answers are being taken: a client that pipelines
     * without reading its answers stops being read, and holds at most {@link #MAX_PIPELINED} requests here.
     */
    private void updateReading(final ChannelHandlerContext ctx)
    {
        final boolean read = held() < MAX_PIPELINED && queuedBytes < ApiServer.MAX_BODY
            && ctx.channel().isWritable() && !overflow && !closing;
        if (ctx.channel().config().isAutoRead() != read)
        {
            ctx.channel().config().setAutoRead(read);
        }
    }

    /** The requests this connection holds: the one being answered and those waiting. */
    private int held()
    {
        return waiting.size() + (busy ? 1 : 0);
    }

    @Override
    public void channelWritabilityChanged(final ChannelHandlerContext ctx) throws Exception
    {
        updateReading(ctx);
        super.channelWritabilityChanged(ctx);
    }

    @Override
    public void userEventTriggered(final ChannelHandlerContext ctx, final Object event) throws Exception
    {
        if (event instanceof ChannelInputShutdownEvent)
        {
            // The peer half-closed (ALLOW_HALF_CLOSURE): its requests are still answered, then the connection closes.
            inputClosed = true;
            next(ctx);
        }
        super.userEventTriggered(ctx, event);
    }

    @Override
    public void channelInactive(final ChannelHandlerContext ctx) throws Exception
    {
        waiting.clear();
        queuedBytes = 0;
        super.channelInactive(ctx);
    }

    @Override
    public void exceptionCaught(final ChannelHandlerContext ctx, final Throwable cause)
    {
        if (cause instanceof java.io.IOException || cause instanceof ReadTimeoutException
            || cause instanceof PrematureChannelClosureException)
        {
            // a peer that went away (also in the middle of a request) or fell idle: nothing went wrong here
            LOG.debug("API connection closed: {}", cause.toString());
        }
        else
        {
            LOG.warn("API connection failed, closing it", cause);
        }
        ctx.close();
    }

    /** Routes one request; the URI is decoded here so a bad escape is a 400 like any other bad input. */
    private CompletableFuture<Reply> dispatch(final Request request) throws ApiException
    {
        if (request.overflow())
        {
            throw new ApiException(429, "too_many_pipelined", null, "more than " + MAX_PIPELINED
                + " requests were pipelined on one connection without their answers being read; the rest were "
                + "dropped unanswered and not done, and the connection is closed");
        }
        if (request.failure() != null)
        {
            throw framing(request.failure());
        }
        final String uri = originForm(request.uri());
        final QueryStringDecoder decoded = new QueryStringDecoder(uri);
        final String rawPath = decoded.rawPath();
        final String[] s;
        try
        {
            s = segments(rawPath);
        }
        catch (final IllegalArgumentException e)
        {
            throw new ApiException(400, "invalid", "path", "the path " + rawPath + " is not valid percent-encoding: "
                + e.getMessage());
        }
        final java.util.Map<String, List<String>> params;
        try
        {
            params = decoded.parameters();
        }
        catch (final IllegalArgumentException e)
        {
            throw new ApiException(400, "invalid", "query", "the query " + decoded.rawQuery()
                + " is not valid percent-encoding: " + e.getMessage());
        }
        return route(request.method(), rawPath, s, params, request.body());
    }

    /** The framing failure the HTTP layer found, as the answer to the request it spoiled. */
    private static ApiException framing(final Throwable cause)
    {
        return new ApiException(400, "bad_request", null, "the request's HTTP framing is invalid ("
            + cause.getMessage() + "); nothing was done, and the connection is closed");
    }

    /**
     * The origin form of a request target: an absolute-form target ({@code http://egressd/v1/health}, as a proxy
     * or some clients send) becomes {@code /v1/health}.
     */
    static String originForm(final String uri)
    {
        final int scheme = uri.indexOf("://");
        if (scheme <= 0 || uri.startsWith("/") || !uri.substring(0, scheme).chars().allMatch(Character::isLetter))
        {
            return uri;
        }
        final int start = scheme + 3;
        int end = start;
        while (end < uri.length() && uri.charAt(end) != '/' && uri.charAt(end) != '?' && uri.charAt(end) != '#')
        {
            end++;
        }
        final String rest = uri.substring(end);
        return rest.startsWith("/") ? rest : "/" + rest;
    }

    /** One request as it waits for its turn: copied out of Netty's buffers, so a waiting request holds none. */
    private record Request(String method, String uri, byte[] body, boolean keepAlive, Throwable failure,
        boolean overflow, long arrived)
    {
        static Request of(final FullHttpRequest request)
        {
            final DecoderResult result = request.decoderResult();
            Throwable failure = result.isFailure() ? result.cause() : null;
            final String te = request.headers().get(HttpHeaderNames.TRANSFER_ENCODING);
            if (failure == null && te != null && !"chunked".equalsIgnoreCase(te.trim()))
            {
                // Netty takes any Transfer-Encoding for chunked; only chunked is understood here.
                failure = new IllegalArgumentException("Transfer-Encoding " + te + " is not supported (only chunked)");
            }
            return new Request(request.method().name(), request.uri(),
                failure == null ? ByteBufUtil.getBytes(request.content()) : new byte[0],
                HttpUtil.isKeepAlive(request), failure, false, System.nanoTime());
        }

        static Request tooMany()
        {
            return new Request("", "", new byte[0], false, null, true, System.nanoTime());
        }
    }

    private CompletableFuture<Reply> route(final String method, final String path, final String[] s,
        final java.util.Map<String, List<String>> params, final byte[] body) throws ApiException
    {
        if (s.length == 1 && "metrics".equals(s[0]) && metrics != null)
        {
            expect(method, "GET");
            noBody(body);
            return CompletableFuture.supplyAsync(() -> new Reply(200, metrics.get()), metricsExecutor);
        }
        if (!api || s.length < 2 || !"v1".equals(s[0]))
        {
            throw notFound(path);
        }
        switch (s[1])
        {
            case "health" ->
            {
                if (s.length != 2)
                {
                    throw notFound(path);
                }
                expect(method, "GET");
                noBody(body);
                final Health health = loop.health();
                return CompletableFuture.completedFuture(new Reply(
                    health.kernel() == KernelStatus.UNAVAILABLE ? 503 : 200,
                    Views.health(health, loop.stateProblem(), version, table(), loop.arpSysctls())));
            }
            case "state" ->
            {
                if (s.length != 2)
                {
                    throw notFound(path);
                }
                expect(method, "GET");
                noBody(body);
                final ConntrackTable.Fill table = table();
                return loop.query(l -> new Reply(200, Views.state(l, version, table)));
            }
            case "recovered" ->
            {
                if (s.length != 2)
                {
                    throw notFound(path);
                }
                expect(method, "DELETE");
                noBody(body);
                return mutate(Operation.FORGET_RECOVERED, "forget recovered", l -> l.forgetRecovered(),
                    l -> Body.MAPPER.createObjectNode().put("recovered", l.recovered().size()));
            }
            case "apps" ->
            {
                return apps(method, path, s, body);
            }
            case "machines" ->
            {
                return machines(method, path, s, params, body);
            }
            case "region" ->
            {
                if (s.length != 2)
                {
                    throw notFound(path);
                }
                expect(method, "GET");
                noBody(body);
                return loop.query(l -> new Reply(200, Views.region(l.ledger(), l.allocator())));
            }
            case "hosts" ->
            {
                if (s.length != 3)
                {
                    throw notFound(path);
                }
                expect(method, "DELETE");
                final Boolean fenced = Body.parse(body, HOST_DELETE_FIELDS).bool("fenced");
                if (!Boolean.TRUE.equals(fenced))
                {
                    throw new ApiException(400, "invalid", "fenced", "deleting a host frees its slots for other "
                        + "machines: confirm that it is fenced or powered off with {\"fenced\": true}");
                }
                final String host = s[2];
                // the quarantine's revision always counts (Placed's revision 0: no slot of this host to fall back on)
                return steered(Operation.DELETE_HOST, "delete host " + host,
                    l -> l.ledger().deleteHost(l.allocator(), host),
                    l -> new Placed(Views.region(l.ledger(), l.allocator()), -1));
            }
            default -> throw notFound(path);
        }
    }

    private CompletableFuture<Reply> apps(final String method, final String path, final String[] s, final byte[] body)
        throws ApiException
    {
        if (s.length < 3)
        {
            throw notFound(path);
        }
        final String app = s[2];
        if (s.length == 3)
        {
            if ("GET".equals(method))
            {
                noBody(body);
                return loop.query(l -> Views.app(l, app)
                    .map(v -> new Reply(200, v))
                    .orElseGet(() -> error(new ApiException(404, "unknown_app", "app", "app " + app + " is not known"))));
            }
            expect(method, "PUT", "GET");
            final Boolean failClosed = Body.parse(body, APP_FIELDS).bool("fail_closed");
            return mutate(Operation.PUT_APP, "put app " + app, l ->
            {
                final boolean current = Views.app(l, app).map(v -> v.get("fail_closed").booleanValue())
                    .orElse(true);
                return l.ledger().putApp(l.allocator(), app, failClosed == null ? current : failClosed);
            }, l -> appView(l, app));
        }
        if (!"pairs".equals(s[3]))
        {
            throw notFound(path);
        }
        if (s.length == 4)
        {
            expect(method, "POST");
            final Body b = Body.parse(body, PAIR_FIELDS);
            final String ipv4 = b.string("ipv4", true);
            final String ipv6 = b.string("ipv6", true);
            final String region = b.string("region", false);
            return mutate(Operation.ADD_PAIR, "add pair " + ipv4 + " to app " + app, l -> RequestText.pair(ipv4, ipv6, region,
                l.settings().region()).then(pair -> notTheHosts(l, pair, () -> l.ledger().addPair(l.allocator(), app, pair))),
                l -> pairView(l, ipv4));
        }
        final String ipv4 = s[4];
        if (s.length == 5)
        {
            expect(method, "DELETE");
            noBody(body);
            return mutate(Operation.RELEASE_PAIR, "release pair " + ipv4 + " of app " + app,
                l -> RequestText.ipv4(ipv4, "ipv4").then(v4 -> l.ledger().releasePair(l.allocator(), app, v4)),
                l -> appView(l, app));
        }
        if (s.length == 6 && "drain".equals(s[5]))
        {
            expect(method, "PUT", "DELETE");
            noBody(body);
            final boolean drained = "PUT".equals(method);
            return mutate(drained ? Operation.DRAIN_PAIR : Operation.UNDRAIN_PAIR, (drained ? "drain" : "undrain") + " pair " + ipv4,
                l -> RequestText.ipv4(ipv4, "ipv4").then(v4 -> l.ledger().setDrained(l.allocator(), app, v4, drained)),
                l -> pairView(l, ipv4));
        }
        throw notFound(path);
    }

    private CompletableFuture<Reply> machines(final String method, final String path, final String[] s,
        final java.util.Map<String, List<String>> params, final byte[] body) throws ApiException
    {
        if (s.length < 3)
        {
            throw notFound(path);
        }
        final String id = s[2];
        if (s.length == 3)
        {
            switch (method)
            {
                case "GET" ->
                {
                    noBody(body);
                    return loop.query(l -> l.allocator().machine(id)
                        .map(v -> new Reply(200, Views.machine(v, conntrack)))
                        .orElseGet(() -> error(unknownMachine(id))));
                }
                case "PUT" ->
                {
                    final Body b = Body.parse(body, MACHINE_FIELDS);
                    final Machine machine = machine(id, b);
                    final String fromHost = b.string("from_host", false);
                    return steered(Operation.PUT_MACHINE, "put machine " + id + (fromHost == null ? ""
                        : " handed over from host " + fromHost), l ->
                        {
                            final Outcome.Refusal hosts = l.hostAddresses().guestProblem(machine);
                            return hosts != null ? hosts : l.putMachine(machine, fromHost);
                        },
                        l -> new Placed(machineView(l, id), l.ledger().slotRevision(id)));
                }
                case "DELETE" ->
                {
                    noBody(body);
                    final boolean handover = flag(params, "handover");
                    return mutate(Operation.DELETE_MACHINE, "delete machine " + id + (handover ? " for a handover" : ""),
                        l -> handover ? l.ledger().removeForHandover(l.allocator(), id) : l.allocator().removeMachine(id),
                        l -> Body.MAPPER.createObjectNode().put("deleted", id).put("handover", handover));
                }
                default -> throw methodNotAllowed(method, "GET, PUT, DELETE");
            }
        }
        if (s.length == 4 && "connections".equals(s[3]))
        {
            expect(method, "GET");
            noBody(body);
            return connections(id, top(params));
        }
        if (!"egress-ip".equals(s[3]))
        {
            throw notFound(path);
        }
        if (s.length == 4)
        {
            expect(method, "PUT", "DELETE");
            if ("PUT".equals(method))
            {
                final Body b = Body.parse(body, EGRESS_FIELDS);
                final String ipv4 = b.string("ipv4", true);
                final String ipv6 = b.string("ipv6", true);
                return mutate(Operation.SET_MACHINE_PAIR, "set machine-scoped pair of " + id, l -> RequestText.pair(ipv4, ipv6, null,
                    l.settings().region()).then(pair -> notTheHosts(l, pair, () -> l.allocator().setMachineScopedPair(id, pair))),
                    l -> machineView(l, id));
            }
            noBody(body);
            return mutate(Operation.RELEASE_MACHINE_PAIR, "release machine-scoped pair of " + id,
                l -> l.allocator().releaseMachineScopedPair(id), l -> machineView(l, id));
        }
        if (s.length == 5 && "promote".equals(s[4]))
        {
            expect(method, "POST");
            noBody(body);
            return mutate(Operation.PROMOTE_MACHINE_PAIR, "promote machine-scoped pair of " + id,
                l -> l.allocator().promote(id), l -> machineView(l, id));
        }
        throw notFound(path);
    }

    /**
     * A pair whose address the host holds or routes as its own is refused before anything changes (docs/api.md,
     * "Addresses that are the host's"); checked on the loop's thread, against the last read of the kernel.
     */
    private static Outcome notTheHosts(final ControlLoop loop, final EgressPair pair, final Supplier<Outcome> then)
    {
        final Outcome.Refusal hosts = loop.hostAddresses().pairProblem(pair);
        return hosts != null ? hosts : then.get();
    }

    private CompletableFuture<Reply> mutate(final Operation operation, final String what,
        final ControlLoop.Mutation mutation, final java.util.function.Function<ControlLoop, JsonNode> view)
    {
        // The view is built in the mutation's own loop task: a later task could already hold another mutation.
        return loop.mutate(operation, what, mutation, view).thenApply(ApiHandler::answer);
    }

    /**
     * A view built on the loop thread, with the revision of the region slot it shows.
     *
     * @param view         the view.
     * @param slotRevision the machine's slot's revision in this host's cache; 0: it holds no region slot (nothing
     *                     to steer); -1: only the mutation's own writes count (a host deletion).
     */
    private record Placed(JsonNode view, long slotRevision)
    {
    }

    /**
     * A mutation whose answer says whether the region's routers steer by it ({@code "steering"}): the answer waits
     * for them off the loop thread (the loop's future completes on it; the wait is the routers' table's, which
     * completes on its own thread) up to {@code router-confirm-ms}.
     */
    private CompletableFuture<Reply> steered(final Operation operation, final String what,
        final ControlLoop.Mutation mutation, final java.util.function.Function<ControlLoop, Placed> view)
    {
        return loop.mutate(operation, what, mutation, view).thenCompose(result ->
        {
            if (!(result instanceof MutationResult.Ok ok) || !(ok.view() instanceof Placed placed)
                || !(placed.view() instanceof ObjectNode node))
            {
                return CompletableFuture.completedFuture(answer(result));
            }
            final long revision = placed.slotRevision() < 0 ? ok.revision()
                : placed.slotRevision() == 0 ? 0 : Math.max(placed.slotRevision(), ok.revision());
            final CompletableFuture<dev.egressd.agent.reconcile.Steering> steering = revision > 0
                ? loop.ledger().steering(revision)
                : CompletableFuture.completedFuture(dev.egressd.agent.reconcile.Steering.NOT_STEERED);
            return steering.thenApply(s ->
            {
                node.set("steering", Views.steering(s));
                return new Reply(200, node);
            });
        });
    }

    private static Reply answer(final MutationResult result)
    {
        if (result instanceof MutationResult.Ok ok)
        {
            if (!(ok.view() instanceof JsonNode view))
            {
                return error(new ApiException(500, "internal", null, "the change was applied but its view "
                    + "could not be built; GET it again"));
            }
            return new Reply(200, view);
        }
        if (result instanceof MutationResult.Refused refused)
        {
            return error(refusal(refused.refusal()));
        }
        if (result instanceof MutationResult.RegionUnavailable region)
        {
            return error(new ApiException(503, "region_unavailable", null, region.message() + "; nothing changed"));
        }
        if (result instanceof MutationResult.StateUnwritable unwritable)
        {
            return error(new ApiException(503, "state_unwritable", null,
                unwritable.message() + "; nothing changed"));
        }
        final MutationResult.Unavailable unavailable = (MutationResult.Unavailable)result;
        return error(new ApiException(503, "kernel_unavailable", null,
            unavailable.message() + "; nothing changed"));
    }

    private CompletableFuture<Reply> connections(final String id, final int top)
    {
        if (conntrack == null)
        {
            return CompletableFuture.completedFuture(error(new ApiException(503, "conntrack_unavailable", null,
                "the conntrack monitor is not running")));
        }
        return conntrack.connections(id, top).thenApply(c -> c == null ? error(unknownMachine(id))
            : new Reply(200, Views.connections(c)));
    }

    private static boolean flag(final java.util.Map<String, List<String>> params, final String name)
        throws ApiException
    {
        final List<String> values = params.get(name);
        if (values == null || values.isEmpty())
        {
            return false;
        }
        if (values.size() == 1 && ("true".equals(values.get(0)) || "false".equals(values.get(0))))
        {
            return "true".equals(values.get(0));
        }
        throw new ApiException(400, "invalid", name, name + " must be true or false, got " + String.join(",", values));
    }

    private static int top(final java.util.Map<String, List<String>> params) throws ApiException
    {
        final List<String> values = params.get("top");
        if (values == null || values.isEmpty())
        {
            return DEFAULT_TOP;
        }
        try
        {
            final int top = Integer.parseInt(values.get(0));
            if (top >= 0 && top <= MAX_TOP)
            {
                return top;
            }
        }
        catch (final NumberFormatException e)
        {
            // answered below
        }
        throw new ApiException(400, "invalid", "top", "top must be an integer 0.." + MAX_TOP + ", got " + values.get(0));
    }

    private JsonNode machineView(final ControlLoop l, final String id)
    {
        return l.allocator().machine(id).map(v -> (JsonNode)Views.machine(v, conntrack))
            .orElseGet(() -> Body.MAPPER.createObjectNode().put("id", id));
    }

    private static JsonNode appView(final ControlLoop l, final String app)
    {
        return Views.app(l, app).map(v -> (JsonNode)v)
            .orElseGet(() -> Body.MAPPER.createObjectNode().put("id", app));
    }

    private static JsonNode pairView(final ControlLoop l, final String ipv4)
    {
        for (final EgressAllocator.PairView pair : l.allocator().pairs())
        {
            if (pair.pair().ipv4().toString().equals(ipv4))
            {
                return Views.pair(pair, l.ledger().hostId());
            }
        }
        return Body.MAPPER.createObjectNode().put("ipv4", ipv4);
    }

    /** A machine's body; its addresses are parsed here, before the loop, field by field in this order. */
    private static Machine machine(final String id, final Body b) throws ApiException
    {
        final String app = b.string("app", true);
        final String iface = b.string("interface", true);
        final Ipv4Address ipv4 = RequestText.optionalIpv4(b.string("ipv4", false), "ipv4")
            .orElseThrow(ApiHandler::refusal);
        final Ipv6Address ipv6 = RequestText.optionalIpv6(b.string("ipv6", false), "ipv6")
            .orElseThrow(ApiHandler::refusal);
        final Ipv4Address pin = RequestText.optionalIpv4(b.string("pin", false), "pin")
            .orElseThrow(ApiHandler::refusal);
        return new Machine(id, app, iface, ipv4, ipv6, pin);
    }

    /**
     * The HTTP status of an allocator refusal.
     *
     * @param reason the refusal's code.
     * @return 400, 404, 409, 422 or 503.
     */
    static int status(final Outcome.Reason reason)
    {
        return switch (reason)
        {
            case INVALID -> 400;
            case UNKNOWN_APP, UNKNOWN_MACHINE, UNKNOWN_PAIR, NO_MACHINE_SCOPED_PAIR -> 404;
            case WRONG_REGION, WRONG_FAMILY -> 422;
            case ADDRESS_IN_USE, DUPLICATE_INTERFACE, PAIR_FULL, PAIR_DRAINED, PIN_FOREIGN_PAIR, SLOT_TAKEN,
                ALREADY_EXISTS -> 409;
            case LEDGER_UNAVAILABLE -> 503;
        };
    }

    private static ApiException refusal(final Outcome.Refusal refusal)
    {
        if (refusal.code() == Outcome.Reason.LEDGER_UNAVAILABLE)
        {
            // one code for "etcd did not answer", whether the allocator or the ledger found it
            return new ApiException(503, "region_unavailable", refusal.field(), refusal.message());
        }
        return new ApiException(status(refusal.code()), refusal.code().name().toLowerCase(Locale.ROOT),
            refusal.field(), refusal.message());
    }

    private static ApiException unknownMachine(final String id)
    {
        return new ApiException(404, "unknown_machine", "id", "machine " + id + " is not known");
    }

    private static ApiException notFound(final String path)
    {
        return new ApiException(404, "not_found", null, "no such path: " + path);
    }

    private static ApiException methodNotAllowed(final String method, final String allowed)
    {
        return new ApiException(405, "method_not_allowed", null, method + " is not allowed here (allowed: "
            + allowed + ")");
    }

    /** A route that takes no body accepts only an empty one or {@code {}} (docs/api.md). */
    private static void noBody(final byte[] body) throws ApiException
    {
        Body.parse(body, Set.of());
    }

    private static void expect(final String method, final String... allowed) throws ApiException
    {
        if (!List.of(allowed).contains(method))
        {
            throw methodNotAllowed(method, String.join(", ", allowed));
        }
    }

    private static String[] segments(final String path)
    {
        final String trimmed = path.startsWith("/") ? path.substring(1) : path;
        final String[] s = trimmed.isEmpty() ? new String[0] : trimmed.split("/", -1);
        for (int i = 0; i < s.length; i++)
        {
            s[i] = QueryStringDecoder.decodeComponent(s[i]);
        }
        return s;
    }

    private static Reply internal(final Throwable failure)
    {
        return error(new ApiException(500, "internal", null, "internal error: " + failure));
    }

    static Reply error(final ApiException e)
    {
        final ObjectNode node = Body.MAPPER.createObjectNode();
        final ObjectNode error = node.putObject("error");
        error.put("code", e.code);
        error.put("message", e.getMessage());
        error.put("field", e.field);
        return new Reply(e.status, node);
    }

    /**
     * Whether a method is one this API uses at all.
     *
     * @param method a method.
     * @return true for GET, PUT, POST, DELETE.
     */
    static boolean known(final HttpMethod method)
    {
        return method == HttpMethod.GET || method == HttpMethod.PUT || method == HttpMethod.POST
            || method == HttpMethod.DELETE;
    }

    /** The kernel conntrack table's last fill; null without a conntrack feed (tests, handlers without one). */
    private ConntrackTable.Fill table()
    {
        return conntrack == null ? null : conntrack.table();
    }
}
