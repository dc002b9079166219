package dev.egressd.agent.api;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.egressd.agent.conntrack.ConnectionQueries;
import dev.egressd.agent.conntrack.ConntrackMonitor;
import dev.egressd.agent.conntrack.MonitorFeeder;
import dev.egressd.agent.refusals.RefusalLog;
import dev.egressd.agent.reconcile.ControlLoop;
import dev.egressd.agent.kernel.FakeKernel;
import dev.egressd.agent.conntrack.ctnetlink.ConntrackEvent;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.handler.codec.http.DefaultFullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpVersion;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code GET /v1/machines/{id}/connections} and the machine view's connection summary, with a running monitor. */
class ConnectionsApiTest
{
    @TempDir
    Path dir;

    private ControlLoop loop;
    private ConntrackMonitor monitor;
    /** Written by the API's and the monitor's threads. */
    private final List<String> refusals = java.util.Collections.synchronizedList(new ArrayList<>());

    @BeforeEach
    void setUp() throws Exception
    {
        loop = ControlLoop.of(new HostSettings("ord", new BlockLayout(4, 1024), 1024),
            DesiredState.empty(new DesiredState.Host("ord", 4, 1024, 1024)), new FakeKernel(), new StateStore(dir),
            Runnable::run, System::nanoTime, 350);
        monitor = new ConntrackMonitor(null, 1024, new RefusalLog(RefusalLog.Format.TEXT, refusals::add,
            System::nanoTime), System::nanoTime).start();
        loop.attach(monitor);
        loop.initialSync();
    }

    @AfterEach
    void tearDown()
    {
        monitor.close();
    }

    private JsonNode call(final int status, final String method, final String uri, final String body) throws Exception
    {
        return call(monitor.queries(), status, method, uri, body);
    }

    private JsonNode call(final ConnectionQueries conntrack, final int status, final String method, final String uri,
        final String body) throws Exception
    {
        final EmbeddedChannel channel = new EmbeddedChannel(new ApiHandler(loop, conntrack, "test", null,
            Runnable::run));
        channel.writeInbound(new DefaultFullHttpRequest(HttpVersion.HTTP_1_1, HttpMethod.valueOf(method), uri,
            body == null ? Unpooled.EMPTY_BUFFER : Unpooled.copiedBuffer(body, StandardCharsets.UTF_8)));
        FullHttpResponse response = channel.readOutbound();
        for (int i = 0; response == null && i < 200; i++)
        {
            Thread.sleep(10);
            channel.runPendingTasks();
            response = channel.readOutbound();
        }
        assertThat(response).as(method + " " + uri).isNotNull();
        try
        {
            final JsonNode json = Body.MAPPER.readTree(response.content().toString(StandardCharsets.UTF_8));
            assertThat(response.status().code()).as(method + " " + uri + " -> " + json).isEqualTo(status);
            return json;
        }
        finally
        {
            response.release();
            channel.finishAndReleaseAll();
        }
    }

    @Test
    void connectionsAnswerTheDocumentedShape() throws Exception
    {
        call(200, "POST", "/v1/apps/a1/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\", \"region\": \"ord\"}");
        final JsonNode m1 = call(200, "PUT", "/v1/machines/m1", "{\"app\": \"a1\", \"interface\": \"tap-m1\", "
            + "\"ipv4\": \"10.77.0.2\"}");
        final int first = m1.get("egress").get("ports").get("first").asInt();
        assertThat(call(200, "GET", "/v1/machines/m1/connections", null).get("busiest").isNull()).isTrue();

        final int guest = Ipv4Address.parse("10.77.0.2").bits();
        final int egress = Ipv4Address.parse("203.0.113.10").bits();
        final int dst = Ipv4Address.parse("198.51.100.10").bits();
        final int nat = NetlinkConstants.IPS_SRC_NAT | NetlinkConstants.IPS_CONFIRMED;
        monitor.runOnMonitorThread(() ->
        {
            final ConntrackEvent e = new ConntrackEvent();
            for (int i = 0; i < 37; i++)
            {
                MonitorFeeder.feed(monitor, e.fillIpv4(ConntrackEvent.Type.NEW, i + 1, 6, nat, 1, guest, 40000 + i,
                    i < 30 ? dst : dst + 1, 80, egress, first + i));
            }
        }).get(5, TimeUnit.SECONDS);

        final JsonNode c = call(200, "GET", "/v1/machines/m1/connections?top=1", null);
        assertThat(c.toString()).isEqualTo("{\"machine\":\"m1\",\"cap\":1024,\"total\":37,"
            + "\"busiest\":{\"destination\":\"198.51.100.10\",\"connections\":30,\"use\":0.029},"
            + "\"destinations\":[{\"destination\":\"198.51.100.10\",\"connections\":30,\"use\":0.029,"
            + "\"ports_in_use\":30}],\"violations\":0}");
        assertThat(call(200, "GET", "/v1/machines/m1/connections", null).get("destinations")).hasSize(2);
        assertThat(call(404, "GET", "/v1/machines/nope/connections", null).get("error").get("code").asText())
            .isEqualTo("unknown_machine");
        assertThat(call(400, "GET", "/v1/machines/m1/connections?top=x", null).get("error").get("field").asText())
            .isEqualTo("top");
        Thread.sleep(1200);   // the machine view reads the snapshot the monitor publishes every second
        final JsonNode view = call(200, "GET", "/v1/machines/m1", null);
        assertThat(view.get("connections").toString()).isEqualTo("{\"total\":37,\"busiest_use\":0.029}");
    }

    @Test
    void refusalsAndPendingMachinesGoToTheRefusalLog() throws Exception
    {
        call(200, "POST", "/v1/apps/a1/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\"}");
        for (int i = 4; i <= 7; i++)      // the pair's 4 slots
        {
            call(200, "PUT", "/v1/machines/m" + i, "{\"app\": \"a1\", \"interface\": \"tap-m" + i + "\", "
                + "\"ipv4\": \"10.77.0." + (10 + i) + "\"}");
        }
        final JsonNode m2 = call(200, "PUT", "/v1/machines/m2", "{\"app\": \"a1\", \"interface\": \"tap-m2\", "
            + "\"ipv4\": \"10.77.0.3\"}");
        call(409, "PUT", "/v1/machines/m3", "{\"app\": \"a1\", \"interface\": \"tap-m3\", \"ipv4\": \"10.77.0.3\"}");
        // a machine gone pending is logged by the monitor in its own turn (its bookkeeping of a change is off the
        // change's path), the API's refusal at once: wait for the monitor's turn, then the two in either order
        monitor.runOnMonitorThread(() -> { }).get(5, TimeUnit.SECONDS);
        assertThat(refusals).as("m2 is %s", m2.get("egress")).hasSize(2);
        assertThat(refusals).anySatisfy(
            r -> assertThat(r).startsWith("refusal reason=pending machine=m2 app=a1 detail="));
        assertThat(refusals).anySatisfy(
            r -> assertThat(r).startsWith("refusal reason=api_address_in_use detail=\"put machine m3: "));
    }

    @Test
    void withoutConntrackTheConnectionsRouteAnswers503AndTheMachineViewHasNoSummary() throws Exception
    {
        call(200, "POST", "/v1/apps/a1/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\"}");
        call(200, "PUT", "/v1/machines/m1", "{\"app\": \"a1\", \"interface\": \"tap-m1\", \"ipv4\": \"10.77.0.2\"}");
        assertThat(call(200, "GET", "/v1/machines/m1", null).has("connections")).as("wired: a summary").isTrue();

        final JsonNode error = call(null, 503, "GET", "/v1/machines/m1/connections", null).get("error");
        assertThat(error.get("code").asText()).isEqualTo("conntrack_unavailable");
        assertThat(error.get("message").asText()).isEqualTo("the conntrack monitor is not running");
        final JsonNode view = call(null, 200, "GET", "/v1/machines/m1", null);
        assertThat(view.get("id").asText()).isEqualTo("m1");
        assertThat(view.has("connections")).isFalse();
    }
}
