package dev.egressd.agent.region;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.region.RegionStore.ClaimAnswer;
import dev.egressd.agent.region.RegionStore.HostRecord;
import dev.egressd.agent.testing.EtcdServer;
import dev.egressd.agent.testing.Privileged;

import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.Client;
import io.etcd.jetcd.KeyValue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The region store's contract on a real etcd: a single member of the test's own ({@link EtcdServer}, Debian's
 * etcd-server), stopped, killed and restarted where a test needs it. Needs the etcd binary (Requirements.etcd()).
 */
@Privileged
class EtcdRegionStoreTest extends RegionStoreContract
{
    private static EtcdServer etcd;

    @BeforeAll
    static void startEtcd()
    {
        etcd = EtcdServer.create();
        // The JVM's first gRPC call loads netty, grpc and vert.x: on a busy machine that alone may pass a deadline.
        try (EtcdRegionStore warm = new EtcdRegionStore(List.of(etcd.endpoint()), "warm"))
        {
            eventually(warm::read, Duration.ofSeconds(60));
        }
        catch (final Exception e)
        {
            throw new IllegalStateException("etcd at " + etcd.endpoint() + " did not answer:\n" + etcd.logTail(), e);
        }
    }

    @AfterAll
    static void stopEtcd()
    {
        if (etcd != null)
        {
            etcd.close();
        }
    }

    @Override
    protected RegionStore open(final String region, final Duration leaseTtl, final Duration deadline)
    {
        return new EtcdRegionStore(List.of(etcd.endpoint()), EtcdRegionStore.DEFAULT_PREFIX, region, deadline, null,
            leaseTtl);
    }

    @Override
    protected void down()
    {
        etcd.stop();
    }

    @Override
    protected void up()
    {
        etcd.start();
    }

    @Override
    protected void killAndRestart()
    {
        etcd.kill();
        etcd.start();
    }

    @Override
    protected void compact(final RegionStore store, final long revision) throws Exception
    {
        ((EtcdRegionStore) store).compact(revision);
    }

    @Override
    protected ClaimAnswer handoverAt(final RegionStore store, final String machine, final String from,
        final String to, final long rev) throws Exception
    {
        return ((EtcdRegionStore) store).handover(machine, from, to, rev);
    }

    @Override
    protected Duration shortDeadline()
    {
        return Duration.ofSeconds(1);
    }

    @Test
    void aLivenessLeaseLostInAnOutageIsGrantedAgain() throws Exception
    {
        final Duration ttl = Duration.ofSeconds(3);
        final RegionStore host = track(open(region(), ttl, EtcdRegionStore.DEFAULT_DEADLINE));
        host.registerHost(new HostRecord("h1", List.of("192.0.2.11"), true));
        final ByteSequence alive = ByteSequence.from("/egressd/" + region() + "/alive/h1", StandardCharsets.UTF_8);
        try (Client client = Client.builder().endpoints(etcd.endpoint()).build())
        {
            final KeyValue first = client.getKVClient().get(alive).get(5, TimeUnit.SECONDS).getKvs().get(0);
            assertThat(first.getLease()).isNotZero();
            // What an outage longer than the TTL does: the lease is gone, and the alive key with it.
            client.getLeaseClient().revoke(first.getLease()).get(5, TimeUnit.SECONDS);
            assertThat(client.getKVClient().get(alive).get(5, TimeUnit.SECONDS).getKvs()).isEmpty();

            awaitTrue(() -> !client.getKVClient().get(alive).get(5, TimeUnit.SECONDS).getKvs().isEmpty(),
                ttl.plusSeconds(5));
            final KeyValue again = client.getKVClient().get(alive).get(5, TimeUnit.SECONDS).getKvs().get(0);
            assertThat(again.getLease()).isNotZero().isNotEqualTo(first.getLease());
            // Only the liveness key is on the lease; the host key is not.
            final KeyValue hostKey = client.getKVClient().get(ByteSequence.from("/egressd/" + region() + "/hosts/h1",
                StandardCharsets.UTF_8)).get(5, TimeUnit.SECONDS).getKvs().get(0);
            assertThat(hostKey.getLease()).isZero();
        }
        assertThat(open().read().hosts().get("h1").alive()).isTrue();
    }

    @Test
    void aRegistrationAfterTheLeaseWasLostGrantsANewOneAtTheLatestOnTheNextTry() throws Exception
    {
        // a long TTL: the renewal on the liveness thread does not come first (it would mend the lease itself)
        final RegionStore host = track(open(region(), Duration.ofSeconds(60), EtcdRegionStore.DEFAULT_DEADLINE));
        final HostRecord h1 = new HostRecord("h1", List.of("192.0.2.11"), true);
        host.registerHost(h1);
        final ByteSequence alive = ByteSequence.from("/egressd/" + region() + "/alive/h1", StandardCharsets.UTF_8);
        try (Client client = Client.builder().endpoints(etcd.endpoint()).build())
        {
            final long first = client.getKVClient().get(alive).get(5, TimeUnit.SECONDS).getKvs().get(0).getLease();
            client.getLeaseClient().revoke(first).get(5, TimeUnit.SECONDS);

            // what a full read after an outage does: register again, while the store still holds the dead lease
            try
            {
                host.registerHost(h1);
            }
            catch (final RegionUnavailableException e)
            {
                assertThat(e).as("refused for the dead lease only").hasMessageContaining("lease not found");
            }
            host.registerHost(h1);
            final KeyValue again = client.getKVClient().get(alive).get(5, TimeUnit.SECONDS).getKvs().get(0);
            assertThat(again.getLease()).isNotZero().isNotEqualTo(first);
        }
        assertThat(open().read().hosts().get("h1").alive()).isTrue();
    }

    @Test
    void aHostKeyWhoseMarkIsAnotherHostsGetsANewOneAndAnOldHostKeyGetsItsFirst() throws Exception
    {
        final String base = "/egressd/" + region() + "/";
        try (Client client = Client.builder().endpoints(etcd.endpoint()).build())
        {
            // hand-made disagreement: h1's key says mark 1, the index gives 1 to h9
            client.getKVClient().put(ByteSequence.from(base + "marks/1", StandardCharsets.UTF_8),
                ByteSequence.from("h9", StandardCharsets.UTF_8)).get(5, TimeUnit.SECONDS);
            client.getKVClient().put(ByteSequence.from(base + "hosts/h1", StandardCharsets.UTF_8),
                ByteSequence.from("{\"addresses\":[],\"mark\":1}", StandardCharsets.UTF_8)).get(5, TimeUnit.SECONDS);
            // a key written before marks existed
            client.getKVClient().put(ByteSequence.from(base + "hosts/h2", StandardCharsets.UTF_8),
                ByteSequence.from("{\"addresses\":[\"192.0.2.12\"]}", StandardCharsets.UTF_8))
                .get(5, TimeUnit.SECONDS);
        }
        assertThat(open().read().hosts().get("h2").mark()).isZero();
        assertThat(open().registerHost(new HostRecord("h1", List.of(), true)).mark()).isEqualTo(2);
        assertThat(open().registerHost(new HostRecord("h2", List.of("192.0.2.12"), true)).mark()).isEqualTo(3);
        final RegionStore.RegionSnapshot snapshot = open().read();
        assertThat(snapshot.hosts().get("h1").mark()).isEqualTo(2);
        assertThat(snapshot.hosts().get("h2").mark()).isEqualTo(3);
    }

    @Test
    void aRouterLeaseLostInAnOutageIsGrantedAgainWithItsLastRevision() throws Exception
    {
        final Duration ttl = Duration.ofSeconds(3);
        final RegionStore router = track(open(region(), ttl, EtcdRegionStore.DEFAULT_DEADLINE));
        router.publishRouter("r1", 42);
        final ByteSequence key = ByteSequence.from("/egressd/" + region() + "/routers/r1", StandardCharsets.UTF_8);
        try (Client client = Client.builder().endpoints(etcd.endpoint()).build())
        {
            final KeyValue first = client.getKVClient().get(key).get(5, TimeUnit.SECONDS).getKvs().get(0);
            assertThat(first.getLease()).isNotZero();
            assertThat(first.getValue().toString(StandardCharsets.UTF_8)).isEqualTo("{\"applied\":42}");
            client.getLeaseClient().revoke(first.getLease()).get(5, TimeUnit.SECONDS);
            awaitTrue(() -> !client.getKVClient().get(key).get(5, TimeUnit.SECONDS).getKvs().isEmpty(),
                ttl.plusSeconds(5));
            final KeyValue again = client.getKVClient().get(key).get(5, TimeUnit.SECONDS).getKvs().get(0);
            assertThat(again.getLease()).isNotZero().isNotEqualTo(first.getLease());
            assertThat(again.getValue().toString(StandardCharsets.UTF_8)).isEqualTo("{\"applied\":42}");
        }
    }

    @Test
    void slotKeysNeverCarryALease() throws Exception
    {
        final RegionStore store = open();
        store.registerHost(new HostRecord("h1", List.of(), true));
        store.claim(slot("203.0.113.5", 4), "h1", "m1");
        try (Client client = Client.builder().endpoints(etcd.endpoint()).build())
        {
            final List<KeyValue> all = client.getKVClient().get(ByteSequence.from("/egressd/" + region() + "/",
                StandardCharsets.UTF_8), io.etcd.jetcd.options.GetOption.builder().isPrefix(true).build())
                .get(5, TimeUnit.SECONDS).getKvs();
            assertThat(all).extracting(kv -> kv.getKey().toString(StandardCharsets.UTF_8)).containsExactlyInAnyOrder(
                "/egressd/" + region() + "/alive/h1", "/egressd/" + region() + "/hosts/h1",
                "/egressd/" + region() + "/machines/m1", "/egressd/" + region() + "/slots/203.0.113.5/04",
                "/egressd/" + region() + "/marks/1");
            assertThat(all).filteredOn(kv -> kv.getKey().toString(StandardCharsets.UTF_8).contains("/marks/"))
                .extracting(kv -> kv.getValue().toString(StandardCharsets.UTF_8)).as("the mark's holder, plain")
                .containsExactly("h1");
            assertThat(all).filteredOn(kv -> kv.getKey().toString(StandardCharsets.UTF_8).contains("/hosts/"))
                .extracting(kv -> kv.getValue().toString(StandardCharsets.UTF_8))
                .containsExactly("{\"addresses\":[],\"mark\":1}");
            assertThat(all).filteredOn(kv -> kv.getLease() != 0).extracting(kv -> kv.getKey()
                .toString(StandardCharsets.UTF_8)).containsExactly("/egressd/" + region() + "/alive/h1");
            assertThat(all).filteredOn(kv -> kv.getKey().toString(StandardCharsets.UTF_8).contains("/slots/"))
                .extracting(kv -> kv.getValue().toString(StandardCharsets.UTF_8))
                .containsExactly("{\"host\":\"h1\",\"machine\":\"m1\",\"leaving\":false,\"quarantine_until\":0}");
        }
    }
}
