package dev.egressd.agent.api;

import com.fasterxml.jackson.databind.JsonNode;
import dev.egressd.agent.reconcile.ControlLoop;
import dev.egressd.agent.reconcile.KernelStatus;
import dev.egressd.agent.reconcile.MutationResult;
import dev.egressd.agent.reconcile.Operation;
import dev.egressd.agent.kernel.FakeKernel;
import dev.egressd.agent.kernel.HostAddresses;
import dev.egressd.agent.kernel.HostAddressesTest;
import dev.egressd.agent.kernel.MemoryKernel;
import dev.egressd.core.model.AddressDevice;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateFiles;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.plan.PlanElement;
import dev.egressd.core.model.Ipv4Address;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.handler.codec.http.DefaultFullHttpRequest;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpVersion;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;

import static org.assertj.core.api.Assertions.assertThat;

class ApiHandlerTest
{
    @TempDir
    Path dir;

    private final HostSettings settings = new HostSettings("ord", new BlockLayout(4, 1024), 1024);
    private final AtomicLong clock = new AtomicLong();
    private FakeKernel kernel;
    private StateStore store;
    private ControlLoop loop;

    /** A response: status and parsed body. */
    record Answer(int status, JsonNode body)
    {
    }

    @BeforeEach
    void setUp() throws Exception
    {
        kernel = new FakeKernel();
        store = new StateStore(dir);
        loop = ControlLoop.of(settings, DesiredState.empty(dummyHost()), kernel, store, Runnable::run,
            clock::get, 350);
        loop.initialSync();
    }

    private DesiredState.Host dummyHost()
    {
        return new DesiredState.Host("ord", 4, 1024, 1024);
    }

    Answer call(final String method, final String uri, final String body) throws Exception
    {
        final EmbeddedChannel channel = new EmbeddedChannel(
            new PeerCheckHandler(PeerPolicy.ROOT_ONLY, c -> new PeerCheckHandler.Peer(1, 0, 0)),
            new ApiHandler(loop, "test", () -> "egressd_up 1\n", Runnable::run));
        final FullHttpRequest request = new DefaultFullHttpRequest(HttpVersion.HTTP_1_1, HttpMethod.valueOf(method),
            uri, body == null ? Unpooled.EMPTY_BUFFER : Unpooled.copiedBuffer(body, StandardCharsets.UTF_8));
        channel.writeInbound(request);
        final FullHttpResponse response = channel.readOutbound();
        assertThat(response).as(method + " " + uri + " answered").isNotNull();
        try
        {
            final String text = response.content().toString(StandardCharsets.UTF_8);
            final JsonNode json = text.startsWith("{") ? Body.MAPPER.readTree(text) : Body.MAPPER.getNodeFactory()
                .textNode(text);
            return new Answer(response.status().code(), json);
        }
        finally
        {
            response.release();
            channel.finishAndReleaseAll();
        }
    }

    Answer ok(final String method, final String uri, final String body) throws Exception
    {
        final Answer answer = call(method, uri, body);
        assertThat(answer.status()).as(method + " " + uri + " -> " + answer.body()).isEqualTo(200);
        return answer;
    }

    void setUpHost() throws Exception
    {
        ok("POST", "/v1/apps/a1/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\", \"region\": \"ord\"}");
        ok("POST", "/v1/apps/a1/pairs", "{\"ipv4\": \"203.0.113.11\", \"ipv6\": \"2001:db8::11\"}");
        ok("PUT", "/v1/apps/a2", "{\"fail_closed\": false}");
        ok("PUT", "/v1/machines/m1", "{\"app\": \"a1\", \"interface\": \"tap-m1\", \"ipv4\": \"10.77.0.2\","
            + " \"ipv6\": \"fd77::2\"}");
        ok("PUT", "/v1/machines/m2", "{\"app\": \"a2\", \"interface\": \"tap-m2\", \"ipv4\": \"10.77.0.3\"}");
        ok("PUT", "/v1/machines/m3", "{\"app\": \"a1\", \"interface\": \"tap-m3\", \"ipv4\": \"10.77.0.4\"}");
        ok("PUT", "/v1/machines/m3/egress-ip", "{\"ipv4\": \"203.0.113.20\", \"ipv6\": \"2001:db8::20\"}");
    }

    @ParameterizedTest(name = "{0} {1} {2}")
    @CsvSource(delimiter = '|', value = {
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"192.0.2.1\", \"ipv6\": \"2001:db8:10::1\"}|ipv4|ipv4 192.0.2.1 cannot be an egress address: it is the host's own address (192.0.2.1/24 on uplink)",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"192.0.2.254\", \"ipv6\": \"2001:db8:10::1\"}|ipv4|ipv4 192.0.2.254 cannot be an egress address: it is the gateway of the host's route default via 192.0.2.254 dev uplink",
        "POST|/v1/apps/a9/pairs|{\"ipv4\": \"10.77.0.2\", \"ipv6\": \"2001:db8:10::1\"}|ipv4|ipv4 10.77.0.2 cannot be an egress address: it is the destination of the host's route 10.77.0.2/32 dev tap-g1",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"203.0.113.77\", \"ipv6\": \"2001:db8:1::1\"}|ipv6|ipv6 2001:db8:1::1 cannot be an egress address: it is the host's own address (2001:db8:1::1/64 on uplink)",
        "PUT|/v1/machines/m1/egress-ip|{\"ipv4\": \"203.0.113.77\", \"ipv6\": \"2001:db8:1::254\"}|ipv6|ipv6 2001:db8:1::254 cannot be an egress address: it is the gateway of the host's route default via 2001:db8:1::254 dev uplink",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv4\": \"192.0.2.1\"}|ipv4|ipv4 192.0.2.1 cannot be a guest address: it is the host's own address (192.0.2.1/24 on uplink)",
        "PUT|/v1/machines/m1|{\"app\": \"a1\", \"interface\": \"tap-m1\", \"ipv4\": \"10.77.0.2\", \"ipv6\": \"2001:db8:1::1\"}|ipv6|ipv6 2001:db8:1::1 cannot be a guest address: it is the host's own address (2001:db8:1::1/64 on uplink)"})
    void anAddressTheHostHoldsOrRoutesIsRefusedAndChangesNothing(final String method, final String uri,
        final String body, final String field, final String message) throws Exception
    {
        setUpHost();
        kernel.hostAddresses(HostAddresses.of("uplink", HostAddressesTest.lab()));
        final String state = ok("GET", "/v1/state", null).body().toString();
        final String file = StateFiles.onDisk(dir);
        final var plan = kernel.plan();
        final Answer answer = call(method, uri, body);
        assertThat(answer.status()).as(answer.body().toString()).isEqualTo(409);
        assertThat(answer.body().get("error").get("code").asText()).isEqualTo("address_in_use");
        assertThat(answer.body().get("error").get("field").asText()).isEqualTo(field);
        assertThat(answer.body().get("error").get("message").asText()).isEqualTo(message);
        assertThat(ok("GET", "/v1/state", null).body().toString()).isEqualTo(state);
        assertThat(StateFiles.onDisk(dir)).isEqualTo(file);
        assertThat(kernel.plan()).isEqualTo(plan);
    }

    @Test
    void aPreProvisionedBareAddressAndEgressdsOwnAreStillPairAddresses() throws Exception
    {
        setUpHost();
        kernel.hostAddresses(HostAddresses.of("uplink", HostAddressesTest.lab()));
        ok("POST", "/v1/apps/a1/pairs", "{\"ipv4\": \"203.0.113.50\", \"ipv6\": \"2001:db8:10::50\"}");
        ok("PUT", "/v1/machines/m2/egress-ip", "{\"ipv4\": \"203.0.113.60\", \"ipv6\": \"2001:db8:10::60\"}");
        // 203.0.113.10 is egressd's own on the uplink (it is a1's pair): repeating the request is harmless.
        ok("POST", "/v1/apps/a1/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\"}");
        ok("PUT", "/v1/machines/m1", "{\"app\": \"a1\", \"interface\": \"tap-m1\", \"ipv4\": \"10.77.0.2\","
            + " \"ipv6\": \"fd77::2\"}");
    }

    @Test
    void withTheLocalLedgerAPlacementsSteeringIsLocal() throws Exception
    {
        setUpHost();
        final JsonNode placed = ok("PUT", "/v1/machines/m4", "{\"app\": \"a1\", \"interface\": \"tap-m4\","
            + " \"ipv4\": \"10.77.0.9\"}").body();
        assertThat(placed.at("/egress/scope").asText()).isEqualTo("app");
        assertThat(placed.get("steering").toString())
            .isEqualTo("{\"state\":\"local\",\"revision\":0,\"waiting_for\":[]}");
        assertThat(ok("GET", "/v1/machines/m4", null).body().has("steering")).as("only the placement's answer")
            .isFalse();
    }

    @Test
    void regionRoutesWithTheLocalLedgerSaySoAndChangeNothing() throws Exception
    {
        setUpHost();
        assertThat(ok("GET", "/v1/region", null).body().get("ledger").asText()).isEqualTo("local");
        final String before = ok("GET", "/v1/state", null).body().toString();
        final Answer handover = call("PUT", "/v1/machines/m9", "{\"app\": \"a1\", \"interface\": \"tap-m9\","
            + " \"from_host\": \"h1\"}");
        assertThat(handover.status()).isEqualTo(400);
        assertThat(handover.body().at("/error/field").asText()).isEqualTo("from_host");
        final Answer leaving = call("DELETE", "/v1/machines/m1?handover=true", null);
        assertThat(leaving.status()).isEqualTo(400);
        assertThat(leaving.body().at("/error/field").asText()).isEqualTo("handover");
        final Answer badFlag = call("DELETE", "/v1/machines/m1?handover=yes", null);
        assertThat(badFlag.status()).isEqualTo(400);
        assertThat(badFlag.body().at("/error/field").asText()).isEqualTo("handover");
        final Answer unconfirmed = call("DELETE", "/v1/hosts/h2", null);
        assertThat(unconfirmed.status()).isEqualTo(400);
        assertThat(unconfirmed.body().at("/error/field").asText()).isEqualTo("fenced");
        final Answer local = call("DELETE", "/v1/hosts/h2", "{\"fenced\": true}");
        assertThat(local.status()).isEqualTo(400);
        assertThat(local.body().at("/error/field").asText()).isEqualTo("host");
        assertThat(ok("GET", "/v1/state", null).body().toString()).as("nothing changed").isEqualTo(before);
        final JsonNode holders = ok("GET", "/v1/apps/a1", null).body().at("/pairs/0/holders/0");
        assertThat(holders.has("host")).as("no host field with the local ledger").isFalse();
    }

    @Test
    void withPairAddressesOnLoTheAppPairsAreOnLoAndHealthCarriesTheArpSysctls() throws Exception
    {
        assertThat(ok("GET", "/v1/state", null).body().at("/host/pair_address_device").asText()).isEqualTo("uplink");
        assertThat(ok("GET", "/v1/health", null).body().get("arp_sysctls").isNull()).as("not checked on the uplink")
            .isTrue();

        final HostSettings onLo = new HostSettings("ord", new BlockLayout(4, 1024), 1024, AddressDevice.LO);
        final java.util.concurrent.atomic.AtomicReference<String> arp = new java.util.concurrent.atomic.AtomicReference<>("ok");
        final MemoryKernel lo = new MemoryKernel()
        {
            @Override
            public String arpSysctls()
            {
                return arp.get();
            }
        };
        loop = ControlLoop.of(onLo, DesiredState.empty(dummyHost()), lo, new StateStore(dir.resolve("lo")),
            Runnable::run, clock::get, 350);
        loop.initialSync();
        setUpHost();
        // a1's pairs on lo; m3's machine-scoped pair on the uplink
        assertThat(lo.plan().elements("uplink4").values()).containsExactlyInAnyOrder(
            new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.10"), AddressDevice.LO),
            new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.11"), AddressDevice.LO),
            new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.20"), AddressDevice.UPLINK));
        assertThat(lo.plan().elements("uplink6").values()).contains(
            new PlanElement.Uplink6(dev.egressd.core.model.Ipv6Address.parse("2001:db8::10"), AddressDevice.LO),
            new PlanElement.Uplink6(dev.egressd.core.model.Ipv6Address.parse("2001:db8::20"), AddressDevice.UPLINK));
        final JsonNode state = ok("GET", "/v1/state", null).body();
        assertThat(state.at("/host/pair_address_device").asText()).isEqualTo("lo");
        assertThat(state.at("/health/arp_sysctls").asText()).isEqualTo("ok");
        arp.set("net.ipv4.conf.all.arp_ignore is 0, needs 1: ...");
        assertThat(ok("GET", "/v1/health", null).body().get("arp_sysctls").asText())
            .isEqualTo("net.ipv4.conf.all.arp_ignore is 0, needs 1: ...");
    }

    @Test
    void healthSaysTheKernelIsInSync() throws Exception
    {
        final Answer answer = ok("GET", "/v1/health", null);
        assertThat(answer.body().get("status").asText()).isEqualTo("ok");
        assertThat(answer.body().get("kernel").asText()).isEqualTo("in_sync");
        assertThat(answer.body().get("revision").asText()).isEqualTo(dev.egressd.agent.version.Version.revision());
    }

    @Test
    void aMachineOfAnAppWithPairsGetsASlotAndTheKernelHoldsItBeforeTheAnswer() throws Exception
    {
        setUpHost();
        final JsonNode m1 = ok("GET", "/v1/machines/m1", null).body();
        assertThat(m1.get("interface").asText()).isEqualTo("tap-m1");
        final JsonNode egress = m1.get("egress");
        assertThat(egress.get("scope").asText()).isEqualTo("app");
        assertThat(egress.get("ipv4").asText()).startsWith("203.0.113.1");
        assertThat(egress.get("ports").get("last").asInt() - egress.get("ports").get("first").asInt())
            .isBetween(1022, 1023);
        assertThat(kernel.plan().elements("snat4")).containsKey(Ipv4Address.parse("10.77.0.2"));
        assertThat(kernel.plan().contains(new PlanElement.Static6(dev.egressd.core.model.Ipv6Address.parse("fd77::2"))))
            .isTrue();
        // a2 has no pair: host scope; m3 has a machine-scoped pair: any port.
        assertThat(ok("GET", "/v1/machines/m2", null).body().get("egress").get("scope").asText()).isEqualTo("host");
        final JsonNode m3 = ok("GET", "/v1/machines/m3", null).body().get("egress");
        assertThat(m3.get("scope").asText()).isEqualTo("machine");
        assertThat(m3.get("ports").get("first").asInt()).isEqualTo(1);
        assertThat(m3.get("ports").get("last").asInt()).isEqualTo(65535);
        // the state on disk has every placement
        assertThat(StateFiles.onDisk(dir)).contains("\"tap-m1\"", "\"block\"", "203.0.113.20");
    }

    @Test
    void stateShowsAppsPairsAndMachines() throws Exception
    {
        setUpHost();
        final JsonNode state = ok("GET", "/v1/state", null).body();
        assertThat(state.get("apps")).hasSize(2);
        assertThat(state.get("machines")).hasSize(3);
        final JsonNode pair = state.get("apps").get(0).get("pairs").get(0);
        assertThat(pair.get("slots").get("capacity").asInt()).isEqualTo(4);
        assertThat(pair.get("drained").asBoolean()).isFalse();
        assertThat(state.get("host").get("region").asText()).isEqualTo("ord");
    }

    @Test
    void theFifthMachineOnAFourSlotHostIsPendingAndTheSlotFreedGoesToIt() throws Exception
    {
        ok("POST", "/v1/apps/a1/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\"}");
        for (int i = 1; i <= 5; i++)
        {
            ok("PUT", "/v1/machines/m" + i, "{\"app\": \"a1\", \"interface\": \"tap-m" + i + "\", \"ipv4\": \"10.77.0."
                + (i + 1) + "\"}");
        }
        final JsonNode m5 = ok("GET", "/v1/machines/m5", null).body().get("egress");
        assertThat(m5.get("scope").asText()).isEqualTo("pending");
        assertThat(kernel.plan().elements("snat4")).doesNotContainKey(Ipv4Address.parse("10.77.0.6"));
        assertThat(kernel.plan().contains(new PlanElement.Static4(Ipv4Address.parse("10.77.0.6")))).isTrue();
        ok("DELETE", "/v1/machines/m2", null);
        assertThat(ok("GET", "/v1/machines/m5", null).body().get("egress").get("scope").asText()).isEqualTo("app");
        assertThat(kernel.plan().elements("guests4")).hasSize(4);
    }

    @Test
    void drainPromoteAndReleaseWork() throws Exception
    {
        setUpHost();
        assertThat(ok("PUT", "/v1/apps/a1/pairs/203.0.113.10/drain", null).body().get("drained").asBoolean()).isTrue();
        assertThat(ok("DELETE", "/v1/apps/a1/pairs/203.0.113.10/drain", null).body().get("drained").asBoolean())
            .isFalse();
        final JsonNode promoted = ok("POST", "/v1/machines/m3/egress-ip/promote", null).body();
        assertThat(promoted.get("egress").get("scope").asText()).isEqualTo("app");
        assertThat(promoted.get("egress").get("ipv4").asText()).isEqualTo("203.0.113.20");
        assertThat(ok("GET", "/v1/apps/a1", null).body().get("pairs")).hasSize(3);
        ok("DELETE", "/v1/apps/a1/pairs/203.0.113.20", null);
        assertThat(ok("GET", "/v1/machines/m3", null).body().get("egress").get("ipv4").asText())
            .isNotEqualTo("203.0.113.20");
        // the released address lingers on the uplink for the drain time, then goes
        assertThat(kernel.plan().contains(new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.20")))).isTrue();
        clock.addAndGet(351_000_000_000L);
        loop.reconcile();
        assertThat(kernel.plan().contains(new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.20")))).isFalse();
        ok("PUT", "/v1/machines/m2/egress-ip", "{\"ipv4\": \"203.0.113.30\", \"ipv6\": \"2001:db8::30\"}");
        assertThat(ok("DELETE", "/v1/machines/m2/egress-ip", null).body().get("egress").get("scope").asText())
            .isEqualTo("host");
    }

    @Test
    void everyMutatingRouteIsObservedUnderItsOwnOperation() throws Exception
    {
        final java.util.List<String> seen = new java.util.ArrayList<>();
        loop.observeChanges((operation, outcome, nanos) -> seen.add(operation.label() + " " + outcome.label()));
        ok("PUT", "/v1/apps/a1", "{\"fail_closed\": true}");
        ok("POST", "/v1/apps/a1/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\"}");
        ok("PUT", "/v1/apps/a1/pairs/203.0.113.10/drain", null);
        ok("DELETE", "/v1/apps/a1/pairs/203.0.113.10/drain", null);
        ok("PUT", "/v1/machines/m1", "{\"app\": \"a1\", \"interface\": \"tap-m1\", \"ipv4\": \"10.77.0.2\"}");
        ok("PUT", "/v1/machines/m1/egress-ip", "{\"ipv4\": \"203.0.113.20\", \"ipv6\": \"2001:db8::20\"}");
        ok("DELETE", "/v1/machines/m1/egress-ip", null);
        ok("PUT", "/v1/machines/m1/egress-ip", "{\"ipv4\": \"203.0.113.20\", \"ipv6\": \"2001:db8::20\"}");
        ok("POST", "/v1/machines/m1/egress-ip/promote", null);
        ok("DELETE", "/v1/apps/a1/pairs/203.0.113.20", null);
        ok("DELETE", "/v1/machines/m1", null);
        ok("DELETE", "/v1/recovered", null);
        assertThat(call("DELETE", "/v1/apps/a1/pairs/203.0.113.99", null).status()).isNotEqualTo(200);
        assertThat(seen).containsExactly("put_app ok", "add_pair ok", "drain_pair ok", "undrain_pair ok",
            "put_machine ok", "set_machine_pair ok", "release_machine_pair ok", "set_machine_pair ok",
            "promote_machine_pair ok", "release_pair ok", "delete_machine ok", "forget_recovered ok",
            "release_pair refused");
        ok("GET", "/v1/apps/a1", null);
        ok("GET", "/v1/state", null);
        assertThat(seen).as("reads are not mutations").hasSize(13);
    }

    @Test
    void repeatingARequestIsHarmless() throws Exception
    {
        setUpHost();
        final String before = StateFiles.onDisk(dir);
        final int batches = kernel.applied.size();
        ok("POST", "/v1/apps/a1/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\", \"region\": \"ord\"}");
        ok("PUT", "/v1/machines/m1", "{\"app\": \"a1\", \"interface\": \"tap-m1\", \"ipv4\": \"10.77.0.2\","
            + " \"ipv6\": \"fd77::2\"}");
        ok("PUT", "/v1/apps/a2", "{\"fail_closed\": false}");
        assertThat(StateFiles.onDisk(dir)).isEqualTo(before);
        assertThat(kernel.applied).hasSize(batches);
    }

    @Test
    void whenTheKernelFailsTheAnswerIs503AndNothingChanges() throws Exception
    {
        setUpHost();
        // After a rollback the placements are identical; only the reason text says "restored".
        final String state = placements(ok("GET", "/v1/state", null).body().get("machines").toString());
        final String file = StateFiles.onDisk(dir);
        kernel.failing = "netlink: operation not permitted";
        final Answer answer = call("PUT", "/v1/machines/m9", "{\"app\": \"a1\", \"interface\": \"tap-m9\","
            + " \"ipv4\": \"10.77.0.9\"}");
        assertThat(answer.status()).isEqualTo(503);
        assertThat(answer.body().get("error").get("code").asText()).isEqualTo("kernel_unavailable");
        kernel.failing = null;
        assertThat(placements(ok("GET", "/v1/state", null).body().get("machines").toString())).isEqualTo(state);
        assertThat(call("GET", "/v1/machines/m9", null).status()).isEqualTo(404);
        assertThat(StateFiles.onDisk(dir)).isEqualTo(file);
    }

    @Test
    void anUnwritableStateDirectoryIsItsOwnErrorAndShowsInHealthUntilThereIsRoom() throws Exception
    {
        setUpHost();
        final String file = StateFiles.onDisk(dir);
        // the temp file every write goes through cannot be opened for writing (as root too)
        StateFiles.blockWrites(dir);
        final Answer answer = call("PUT", "/v1/machines/m9", "{\"app\": \"a1\", \"interface\": \"tap-m9\","
            + " \"ipv4\": \"10.77.0.9\"}");
        assertThat(answer.status()).isEqualTo(503);
        assertThat(answer.body().get("error").get("code").asText()).isEqualTo("state_unwritable");
        assertThat(answer.body().get("error").get("message").asText())
            .contains(dir.resolve(StateStore.JOURNAL).toString(), "Is a directory", "nothing changed");
        assertThat(call("GET", "/v1/machines/m9", null).status()).isEqualTo(404);
        StateFiles.unblockWrites(dir);
        assertThat(StateFiles.onDisk(dir)).isEqualTo(file);
        StateFiles.blockWrites(dir);
        final JsonNode health = ok("GET", "/v1/health", null).body();
        assertThat(health.get("status").asText()).isEqualTo("degraded");
        assertThat(health.get("state").asText()).startsWith("unwritable: ").contains("Is a directory");
        assertThat(loop.stateWriteFailures()).isEqualTo(1);
        // room again: the reconcile loop's retry clears it without a change to try
        StateFiles.unblockWrites(dir);
        loop.reconcile();
        final JsonNode after = ok("GET", "/v1/health", null).body();
        assertThat(after.get("state").asText()).isEqualTo("ok");
        assertThat(after.get("status").asText()).isEqualTo("ok");
        ok("PUT", "/v1/machines/m9", "{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv4\": \"10.77.0.9\"}");
    }

    private static String placements(final String json)
    {
        return json.replaceAll("\"reason\":\"[^\"]*\"", "");
    }

    @Test
    void driftIsRepairedByTheReconcileLoop() throws Exception
    {
        setUpHost();
        final var want = kernel.plan();
        kernel.deleteTable();
        loop.reconcile();
        assertThat(kernel.plan()).isEqualTo(want);
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.REPAIRED_DRIFT);
        loop.reconcile();
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
        kernel.failing = "gone";
        loop.reconcile();
        assertThat(call("GET", "/v1/health", null).status()).isEqualTo(503);
        assertThat(loop.health().consecutiveFailures()).isEqualTo(1);
        loop.reconcile(); // backing off: not even tried
        assertThat(loop.health().consecutiveFailures()).isEqualTo(1);
        kernel.failing = null;
        clock.addAndGet(1_000_000_000L);
        loop.reconcile();
        assertThat(loop.health().kernel()).isEqualTo(KernelStatus.IN_SYNC);
    }

    @Test
    void metricsAreServed() throws Exception
    {
        assertThat(ok("GET", "/metrics", null).body().asText()).contains("egressd_up");
    }

    @Test
    void aPeerThatIsNotRootIsRefused() throws Exception
    {
        final EmbeddedChannel channel = new EmbeddedChannel(
            new PeerCheckHandler(new PeerPolicy(1234, java.util.Set.of(1001)),
                c -> new PeerCheckHandler.Peer(7, 1000, 1000)),
            new ApiHandler(loop, "test", null, Runnable::run));
        channel.writeInbound(new DefaultFullHttpRequest(HttpVersion.HTTP_1_1, HttpMethod.GET, "/v1/state"));
        final FullHttpResponse response = channel.readOutbound();
        assertThat(response.status().code()).isEqualTo(403);
        response.release();
        assertThat(channel.isOpen()).isFalse();
        assertThat(new PeerPolicy(1234, java.util.Set.of(1001)).allows(1001, 5)).isTrue();
        assertThat(new PeerPolicy(1234, java.util.Set.of()).allows(1000, 1234)).isTrue();
        assertThat(PeerPolicy.ROOT_ONLY.allows(1000, 0)).isFalse();
    }

    @ParameterizedTest(name = "{0} {1} {2} -> {3} {4}")
    @CsvSource(delimiter = '|', value = {
        "PUT|/v1/machines/m9|{\"app\": \"a1\", |400|malformed_json|",
        "PUT|/v1/machines/m9|[1, 2]|400|malformed_json|",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv4\": \"10.77.0.9\", \"colour\": 1}|400|unknown_field|colour",
        "PUT|/v1/machines/m9|{\"app\": 5, \"interface\": \"tap-m9\", \"ipv4\": \"10.77.0.9\"}|400|wrong_type|app",
        "PUT|/v1/machines/m9|{\"interface\": \"tap-m9\", \"ipv4\": \"10.77.0.9\"}|400|missing_field|app",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv4\": \"fd77::9\"}|422|wrong_family|ipv4",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv6\": \"10.77.0.9\"}|422|wrong_family|ipv6",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv4\": \"10.77.0.999\"}|400|invalid|ipv4",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\"}|400|invalid|ipv4",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap/m9\", \"ipv4\": \"10.77.0.9\"}|400|invalid|interface",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"vm-1\", \"ipv4\": \"10.77.0.9\"}|400|invalid|interface",
        "PUT|/v1/machines/m1|{\"app\": \"a1\", \"interface\": \"vm-1\", \"ipv4\": \"10.77.0.2\", \"ipv6\": \"fd77::2\"}|400|invalid|interface",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m1\", \"ipv4\": \"10.77.0.9\"}|409|duplicate_interface|interface",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv4\": \"10.77.0.2\"}|409|address_in_use|ipv4",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv4\": \"203.0.113.10\"}|409|address_in_use|ipv4",
        "PUT|/v1/machines/m9|{\"app\": \"a2\", \"interface\": \"tap-m9\", \"ipv4\": \"10.77.0.9\", \"pin\": \"203.0.113.10\"}|409|pin_foreign_pair|pin",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv4\": \"10.77.0.9\", \"pin\": \"203.0.113.99\"}|404|unknown_pair|pin",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv4\": \"10.77.0.9\", \"pin\": \"203.0.113.12\"}|409|pair_full|pin",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"2001:db8::50\", \"ipv6\": \"2001:db8::51\"}|422|wrong_family|ipv4",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"203.0.113.50\", \"ipv6\": \"203.0.113.51\"}|422|wrong_family|ipv6",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"203.0.113.50\", \"ipv6\": \"2001:db8::50\", \"region\": \"ams\"}|422|wrong_region|region",
        "POST|/v1/apps/a2/pairs|{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::60\"}|409|address_in_use|ipv4",
        "POST|/v1/apps/a2/pairs|{\"ipv4\": \"203.0.113.20\", \"ipv6\": \"2001:db8::20\"}|409|address_in_use|ipv4",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"203.0.113.50\"}|400|missing_field|ipv6",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"169.254.1.1\", \"ipv6\": \"2001:db8::50\"}|400|invalid|ipv4",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"203.0.113.50\", \"ipv6\": \"fe80::1\"}|400|invalid|ipv6",
        "PUT|/v1/machines/m1/egress-ip|{\"ipv4\": \"127.0.0.1\", \"ipv6\": \"2001:db8::50\"}|400|invalid|ipv4",
        "PUT|/v1/machines/m3/egress-ip|{\"ipv4\": \"203.0.113.20\", \"ipv6\": \"fe80::20\"}|400|invalid|ipv6",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"203.0.113.50\", \"ipv6\": \"2001:db8::50\", \"extra\": true}|400|unknown_field|extra",
        "DELETE|/v1/apps/a1/pairs/203.0.113.77||404|unknown_pair|",
        "DELETE|/v1/apps/nope/pairs/203.0.113.10||404||",
        "PUT|/v1/apps/a1/pairs/203.0.113.77/drain||404|unknown_pair|",
        "GET|/v1/apps/nope||404|unknown_app|app",
        "PUT|/v1/apps/a1|{\"fail_closed\": \"yes\"}|400|wrong_type|fail_closed",
        "GET|/v1/machines/nope||404|unknown_machine|id",
        "DELETE|/v1/machines/nope||404|unknown_machine|",
        "PUT|/v1/machines/nope/egress-ip|{\"ipv4\": \"203.0.113.70\", \"ipv6\": \"2001:db8::70\"}|404|unknown_machine|",
        "DELETE|/v1/machines/m1/egress-ip||404|no_machine_scoped_pair|",
        "POST|/v1/machines/m1/egress-ip/promote||404|no_machine_scoped_pair|",
        "PUT|/v1/machines/m1/egress-ip|{\"ipv4\": \"203.0.113.11\", \"ipv6\": \"2001:db8::11\"}|409|address_in_use|ipv4",
        "GET|/v1/nothing||404|not_found|",
        "PATCH|/v1/machines/m1|{}|405|method_not_allowed|",
        "POST|/v1/health||405|method_not_allowed|",
        // routes that take no body accept only an empty one or {}
        "DELETE|/v1/recovered|not json|400|malformed_json|",
        "DELETE|/v1/recovered|{\"x\": 1}|400|unknown_field|x",
        "GET|/v1/health|not json|400|malformed_json|",
        "GET|/v1/state|{\"x\": 1}|400|unknown_field|x",
        "GET|/metrics|not json|400|malformed_json|",
        "GET|/v1/apps/a1|[]|400|malformed_json|",
        "GET|/v1/machines/m1|not json|400|malformed_json|",
        "GET|/v1/machines/m1/connections|not json|400|malformed_json|",
        "DELETE|/v1/machines/m1|{\"app\": \"a1\"}|400|unknown_field|app",
        "DELETE|/v1/apps/a1/pairs/203.0.113.10|not json|400|malformed_json|",
        "PUT|/v1/apps/a1/pairs/203.0.113.10/drain|{\"x\": 1}|400|unknown_field|x",
        "DELETE|/v1/machines/m3/egress-ip|not json|400|malformed_json|",
        "POST|/v1/machines/m3/egress-ip/promote|not json|400|malformed_json|",
    })
    void aBadRequestGetsTheRightStatusAndChangesNothing(final String method, final String uri, final String body,
        final int status, final String code, final String field) throws Exception
    {
        setUpHost();
        // fill pair 203.0.113.12 (a1) to make pins to a full pair possible
        ok("POST", "/v1/apps/a1/pairs", "{\"ipv4\": \"203.0.113.12\", \"ipv6\": \"2001:db8::12\"}");
        for (int i = 0; i < 4; i++)
        {
            ok("PUT", "/v1/machines/p" + i, "{\"app\": \"a1\", \"interface\": \"tap-p" + i + "\", \"ipv4\": \"10.78.0."
                + (i + 1) + "\", \"pin\": \"203.0.113.12\"}");
        }
        final String state = ok("GET", "/v1/state", null).body().toString();
        final String file = StateFiles.onDisk(dir);
        final var plan = kernel.plan();
        final Answer answer = call(method, uri, body);
        assertThat(answer.status()).as(answer.body().toString()).isEqualTo(status);
        final JsonNode error = answer.body().get("error");
        assertThat(error.get("message").asText()).isNotBlank();
        if (code != null)
        {
            assertThat(error.get("code").asText()).isEqualTo(code);
        }
        if (field != null)
        {
            assertThat(error.get("field").asText()).isEqualTo(field);
        }
        assertThat(ok("GET", "/v1/state", null).body().toString()).isEqualTo(state);
        assertThat(StateFiles.onDisk(dir)).isEqualTo(file);
        assertThat(kernel.plan()).isEqualTo(plan);
    }

    @Test
    void aMachineOutsideTheGuestInterfacesPatternIsRefusedNamingThePattern() throws Exception
    {
        setUpHost();
        final Answer answer = call("PUT", "/v1/machines/m9", "{\"app\": \"a1\", \"interface\": \"vm-1\", "
            + "\"ipv4\": \"10.77.0.9\"}");
        assertThat(answer.status()).isEqualTo(400);
        assertThat(answer.body().get("error").get("field").asText()).isEqualTo("interface");
        assertThat(answer.body().get("error").get("message").asText()).contains("vm-1", "tap-*");
    }

    @ParameterizedTest(name = "{0} {1} {2}")
    @CsvSource(delimiter = '|', value = {
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv4\": \"fd77::9\"}|422|wrong_family|ipv4|ipv4 must be an IPv4 address, got IPv6 \"fd77::9\"",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"fd77::9\", \"ipv6\": \"2001:db8::50\"}|422|wrong_family|ipv4|ipv4 must be an IPv4 address, got IPv6 \"fd77::9\"",
        "PUT|/v1/machines/m1/egress-ip|{\"ipv4\": \"fd77::9\", \"ipv6\": \"2001:db8::50\"}|422|wrong_family|ipv4|ipv4 must be an IPv4 address, got IPv6 \"fd77::9\"",
        "DELETE|/v1/apps/a1/pairs/fd77::9||422|wrong_family|ipv4|ipv4 must be an IPv4 address, got IPv6 \"fd77::9\"",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv4\": \"10.77.0.999\"}|400|invalid|ipv4|ipv4 must be an IPv4 address (dotted quad), got \"10.77.0.999\"",
        "PUT|/v1/apps/a1/pairs/10.77.0.999/drain||400|invalid|ipv4|ipv4 must be an IPv4 address (dotted quad), got \"10.77.0.999\"",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv4\": \"10.77.0.9\", \"pin\": \"x\"}|400|invalid|pin|pin must be an IPv4 address (dotted quad), got \"x\"",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv6\": \"10.77.0.9\"}|422|wrong_family|ipv6|ipv6 must be an IPv6 address, got IPv4 \"10.77.0.9\"",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"203.0.113.50\", \"ipv6\": \"10.77.0.9\"}|422|wrong_family|ipv6|ipv6 must be an IPv6 address, got IPv4 \"10.77.0.9\"",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv6\": \"fd77::zz\"}|400|invalid|ipv6|ipv6 must be an IPv6 address, got \"fd77::zz\"",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"203.0.113.50\", \"ipv6\": \"fd77::zz\"}|400|invalid|ipv6|ipv6 must be an IPv6 address, got \"fd77::zz\"",
        "PUT|/v1/machines/m9|{\"app\": \"a1\", \"interface\": \"tap-m1\", \"ipv4\": \"10.77.0.9\"}|409|duplicate_interface|interface|interface tap-m1 is already the guest interface of machine m1",
        // a pair address no machine could leave from, on both pair routes
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"169.254.1.1\", \"ipv6\": \"2001:db8::50\"}|400|invalid|ipv4|ipv4 169.254.1.1 cannot be an egress address: it is a link-local address (169.254.0.0/16)",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"127.0.0.1\", \"ipv6\": \"2001:db8::50\"}|400|invalid|ipv4|ipv4 127.0.0.1 cannot be an egress address: it is a loopback address (127.0.0.0/8)",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"0.0.0.0\", \"ipv6\": \"2001:db8::50\"}|400|invalid|ipv4|ipv4 0.0.0.0 cannot be an egress address: it is in 0.0.0.0/8 (unspecified, \"this network\")",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"255.255.255.255\", \"ipv6\": \"2001:db8::50\"}|400|invalid|ipv4|ipv4 255.255.255.255 cannot be an egress address: it is the limited broadcast address 255.255.255.255",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"203.0.113.50\", \"ipv6\": \"fe80::1\"}|400|invalid|ipv6|ipv6 fe80::1 cannot be an egress address: it is a link-local address (fe80::/10)",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"203.0.113.50\", \"ipv6\": \"::1\"}|400|invalid|ipv6|ipv6 ::1 cannot be an egress address: it is the loopback address ::1",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"203.0.113.50\", \"ipv6\": \"::\"}|400|invalid|ipv6|ipv6 :: cannot be an egress address: it is the unspecified address ::",
        "POST|/v1/apps/a1/pairs|{\"ipv4\": \"203.0.113.50\", \"ipv6\": \"ff02::1\"}|400|invalid|ipv6|ipv6 ff02::1 cannot be an egress address: it is a multicast address (ff00::/8)",
        "PUT|/v1/machines/m1/egress-ip|{\"ipv4\": \"224.0.0.5\", \"ipv6\": \"2001:db8::50\"}|400|invalid|ipv4|ipv4 224.0.0.5 cannot be an egress address: it is a multicast address (224.0.0.0/4)",
        "PUT|/v1/machines/m1/egress-ip|{\"ipv4\": \"169.254.0.1\", \"ipv6\": \"2001:db8::50\"}|400|invalid|ipv4|ipv4 169.254.0.1 cannot be an egress address: it is a link-local address (169.254.0.0/16)",
        "PUT|/v1/machines/m1/egress-ip|{\"ipv4\": \"203.0.113.50\", \"ipv6\": \"fe80::99\"}|400|invalid|ipv6|ipv6 fe80::99 cannot be an egress address: it is a link-local address (fe80::/10)",
    })
    void anAddressFieldIsWordedTheSameOnEveryRoute(final String method, final String uri, final String body,
        final int status, final String code, final String field, final String message) throws Exception
    {
        setUpHost();
        final Answer answer = call(method, uri, body);
        assertThat(answer.status()).as(answer.body().toString()).isEqualTo(status);
        final JsonNode error = answer.body().get("error");
        assertThat(error.get("code").asText()).isEqualTo(code);
        assertThat(error.get("field").asText()).isEqualTo(field);
        assertThat(error.get("message").asText()).isEqualTo(message);
    }

    @Test
    void theAnswerOfAMutationShowsItsOwnResultEvenWithAnotherMutationQueuedBehindIt() throws Exception
    {
        setUpHost();
        // a loop whose tasks wait in a queue until the test runs them, like a busy loop thread
        final java.util.ArrayDeque<Runnable> tasks = new java.util.ArrayDeque<>();
        final ControlLoop queued = ControlLoop.of(settings, store.load().state(), kernel, store, tasks::add,
            clock::get, 350);
        queued.initialSync();
        final EmbeddedChannel channel = new EmbeddedChannel(
            new PeerCheckHandler(PeerPolicy.ROOT_ONLY, c -> new PeerCheckHandler.Peer(1, 0, 0)),
            new ApiHandler(queued, "test", null, Runnable::run));
        channel.writeInbound(new DefaultFullHttpRequest(HttpVersion.HTTP_1_1, HttpMethod.PUT, "/v1/machines/m9",
            Unpooled.copiedBuffer("{\"app\": \"a1\", \"interface\": \"tap-m9\", \"ipv4\": \"10.77.0.9\"}",
                StandardCharsets.UTF_8)));
        // right behind it, another client deletes the same machine
        final var delete = queued.mutate(Operation.DELETE_MACHINE, "delete machine m9",
            l -> l.allocator().removeMachine("m9"));
        while (!tasks.isEmpty())
        {
            tasks.poll().run();
        }
        channel.runPendingTasks();
        assertThat(delete.get()).isInstanceOf(MutationResult.Ok.class);
        final FullHttpResponse response = channel.readOutbound();
        assertThat(response).isNotNull();
        try
        {
            assertThat(response.status().code()).isEqualTo(200);
            final JsonNode m9 = Body.MAPPER.readTree(response.content().toString(StandardCharsets.UTF_8));
            assertThat(m9.get("interface").asText()).isEqualTo("tap-m9");
            assertThat(m9.get("egress").get("scope").asText()).isEqualTo("app");
            assertThat(m9.get("egress").get("ipv4").asText()).startsWith("203.0.113.1");
        }
        finally
        {
            response.release();
            channel.finishAndReleaseAll();
        }
        assertThat(queued.allocator().machine("m9")).isEmpty();
    }

    @Test
    void metricsAreScrapedOffTheEventLoop() throws Exception
    {
        final java.util.ArrayDeque<Runnable> scrapes = new java.util.ArrayDeque<>();
        final EmbeddedChannel channel = new EmbeddedChannel(
            new PeerCheckHandler(PeerPolicy.ROOT_ONLY, c -> new PeerCheckHandler.Peer(1, 0, 0)),
            new ApiHandler(loop, "test", () -> "egressd_up 1\n", scrapes::add));
        channel.writeInbound(new DefaultFullHttpRequest(HttpVersion.HTTP_1_1, HttpMethod.GET, "/metrics"));
        assertThat(channel.<Object>readOutbound()).as("not scraped on the event loop").isNull();
        assertThat(scrapes).hasSize(1);
        scrapes.poll().run();
        channel.runPendingTasks();
        final FullHttpResponse response = channel.readOutbound();
        assertThat(response).isNotNull();
        try
        {
            assertThat(response.status().code()).isEqualTo(200);
            assertThat(response.content().toString(StandardCharsets.UTF_8)).contains("egressd_up 1");
        }
        finally
        {
            response.release();
            channel.finishAndReleaseAll();
        }
    }
}
