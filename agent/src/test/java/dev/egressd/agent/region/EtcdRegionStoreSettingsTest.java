package dev.egressd.agent.region;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.egressd.agent.region.EtcdRegionStore.Tls;

import io.etcd.jetcd.common.exception.ErrorCode;
import io.etcd.jetcd.common.exception.EtcdExceptionFactory;
import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.StatusRuntimeException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Wrong settings of the etcd store are refused before anything connects, each error naming its setting. */
class EtcdRegionStoreSettingsTest
{
    @TempDir
    Path dir;

    private static EtcdRegionStore store(final List<String> endpoints, final String prefix, final String region,
        final Duration deadline, final Tls tls, final Duration ttl)
    {
        return new EtcdRegionStore(endpoints, prefix, region, deadline, tls, ttl);
    }

    @Test
    void renewalsThatRunIntoTheDeadlineAreTriedAgainSoonEnoughToKeepTheLease()
    {
        final Duration ttl = EtcdRegionStore.DEFAULT_LEASE_TTL;
        final long deadline = EtcdRegionStore.DEFAULT_DEADLINE.toMillis();
        assertThat(EtcdRegionStore.renewalDelayMillis(ttl, true)).isEqualTo(ttl.toMillis() / 3);
        // the last renewal that worked was at 0; every later one waits the whole deadline and fails
        long at = EtcdRegionStore.renewalDelayMillis(ttl, true);
        int tries = 0;
        while (at < ttl.toMillis())
        {
            tries++;
            at += deadline + EtcdRegionStore.renewalDelayMillis(ttl, false);
        }
        assertThat(tries).as("renewals started within one TTL of the last good one, each taking the %d ms deadline",
            deadline).isGreaterThanOrEqualTo(3);
    }

    @Test
    void aMissingCaFileIsNamed()
    {
        final Path missing = dir.resolve("ca.pem");
        assertThatThrownBy(() -> EtcdRegionStore.sslContext(new Tls(missing, null, null)))
            .isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("etcd-ca-file").hasMessageContaining(missing.toString())
            .hasMessageContaining("not a readable file");
        assertThatThrownBy(() -> EtcdRegionStore.sslContext(new Tls(null, null, null)))
            .hasMessage("etcd-ca-file: missing");
    }

    @Test
    void aCaFileWithoutACertificateIsNamed() throws Exception
    {
        final Path ca = Files.writeString(dir.resolve("ca.pem"), "not a certificate\n");
        assertThatThrownBy(() -> EtcdRegionStore.sslContext(new Tls(ca, null, null)))
            .isInstanceOf(IllegalArgumentException.class)
            .hasMessageStartingWith("etcd-ca-file: " + ca);
    }

    @Test
    void aCertificateWithoutItsKeyOrABadPairIsNamed() throws Exception
    {
        final Path ca = Files.writeString(dir.resolve("ca.pem"), "x");
        final Path cert = Files.writeString(dir.resolve("cert.pem"), "x");
        assertThatThrownBy(() -> EtcdRegionStore.sslContext(new Tls(ca, cert, null)))
            .hasMessageStartingWith("etcd-key-file: missing");
        assertThatThrownBy(() -> EtcdRegionStore.sslContext(new Tls(ca, null, cert)))
            .hasMessageStartingWith("etcd-cert-file: missing");
        // Every file is checked to exist before any is parsed: the unreadable key is named, not the bad CA.
        final Path key = dir.resolve("absent-key.pem");
        assertThatThrownBy(() -> EtcdRegionStore.sslContext(new Tls(ca, cert, key)))
            .hasMessage("etcd-key-file: " + key + " is not a readable file");
    }

    @Test
    void endpointsPrefixRegionDeadlineAndTtlAreChecked()
    {
        final List<String> ok = List.of("http://127.0.0.1:2379");
        final Duration d = Duration.ofSeconds(2);
        final Duration ttl = Duration.ofSeconds(10);
        assertThatThrownBy(() -> store(List.of(), "/egressd", "ord", d, null, ttl))
            .hasMessage("etcd-endpoints: none given");
        assertThatThrownBy(() -> store(List.of("127.0.0.1:2379"), "/egressd", "ord", d, null, ttl))
            .hasMessageStartingWith("etcd-endpoints: 127.0.0.1:2379 is not http://host:port");
        assertThatThrownBy(() -> store(List.of("https://127.0.0.1:2379"), "/egressd", "ord", d, null, ttl))
            .hasMessageContaining("etcd-endpoints").hasMessageContaining("etcd-ca-file");
        assertThatThrownBy(() -> store(ok, "egressd", "ord", d, null, ttl)).hasMessageStartingWith("etcd-prefix: ");
        assertThatThrownBy(() -> store(ok, "/egressd/", "ord", d, null, ttl)).hasMessageStartingWith("etcd-prefix: ");
        assertThatThrownBy(() -> store(ok, "/egressd", "Ord", d, null, ttl)).hasMessageStartingWith("region: ");
        assertThatThrownBy(() -> store(ok, "/egressd", "ord", Duration.ZERO, null, ttl))
            .hasMessageStartingWith("etcd-deadline: ");
        assertThatThrownBy(() -> store(ok, "/egressd", "ord", d, null, Duration.ofMillis(1500)))
            .hasMessageStartingWith("etcd-lease-ttl: ");
        final Path ca = dir.resolve("ca.pem");
        assertThatThrownBy(() -> store(List.of("https://127.0.0.1:2379"), "/egressd", "ord", d,
            new Tls(ca, null, null), ttl)).hasMessageStartingWith("etcd-ca-file: " + ca);
    }

    @Test
    void idsThatWouldBreakAKeyAreRefusedBeforeAnyRequest()
    {
        try (EtcdRegionStore store = store(List.of("http://127.0.0.1:9"), "/egressd", "ord", Duration.ofSeconds(1),
            null, Duration.ofSeconds(10)))
        {
            final RegionStore.SlotId slot = RegionStoreContract.slot("203.0.113.5", 0);
            assertThatThrownBy(() -> store.claim(slot, "h/1", "m1")).hasMessageStartingWith("host: h/1");
            assertThatThrownBy(() -> store.claim(slot, "h1", "")).hasMessageStartingWith("machine: ");
            assertThatThrownBy(() -> store.claim(RegionStoreContract.slot("203.0.113.5", 64), "h1", "m1"))
                .hasMessageStartingWith("slot: ");
            assertThat(store.stats().requests()).isZero();
        }
    }

    @Test
    void keysSortByBlock()
    {
        final RegionKeys keys = new RegionKeys("/egressd", "ord");
        assertThat(keys.slot(RegionStoreContract.slot("203.0.113.5", 3)))
            .isEqualTo("/egressd/ord/slots/203.0.113.5/03");
        assertThat(keys.slot(RegionStoreContract.slot("203.0.113.5", 10)))
            .isGreaterThan(keys.slot(RegionStoreContract.slot("203.0.113.5", 9)));
        assertThat(RegionKeys.parseSlot("203.0.113.5/03")).isEqualTo(RegionStoreContract.slot("203.0.113.5", 3));
    }

    @Test
    void etcdsAnswerCodeIsReadFromJetcdsExceptionAndFromGrpcsOwn()
    {
        // the lease calls fail with jetcd's exception, puts and transactions with gRPC's: both are etcd's answer
        assertThat(EtcdRegionStore.errorCode(EtcdExceptionFactory.newEtcdException(ErrorCode.NOT_FOUND, "lease")))
            .isEqualTo(ErrorCode.NOT_FOUND);
        assertThat(EtcdRegionStore.errorCode(new StatusRuntimeException(Status.NOT_FOUND
            .withDescription("etcdserver: requested lease not found")))).isEqualTo(ErrorCode.NOT_FOUND);
        assertThat(EtcdRegionStore.errorCode(new StatusException(Status.FAILED_PRECONDITION)))
            .isEqualTo(ErrorCode.FAILED_PRECONDITION);
        assertThat(EtcdRegionStore.errorCode(new java.util.concurrent.TimeoutException())).isNull();
        assertThat(EtcdRegionStore.errorCode(null)).isNull();
    }
}
