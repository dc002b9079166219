package dev.egressd.agent.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RouterConfigTest
{
    private static final Map<String, String> REQUIRED = Map.of("region", "ord", "etcd-endpoints",
        "http://192.0.2.10:2379,http://192.0.2.11:2379");

    @TempDir
    Path dir;

    private RouterConfig load(final Map<String, String> flags) throws Exception
    {
        return RouterConfig.load(Files.writeString(dir.resolve("router.conf"), ""), flags);
    }

    private static Map<String, String> with(final String key, final String value)
    {
        final Map<String, String> flags = new HashMap<>(REQUIRED);
        flags.put(key, value);
        return flags;
    }

    @Test
    void defaults() throws Exception
    {
        final RouterConfig c = load(with("router-id", "r1"));
        assertThat(c.region()).isEqualTo("ord");
        assertThat(c.endpoints()).containsExactly("http://192.0.2.10:2379", "http://192.0.2.11:2379");
        assertThat(c.prefix()).isEqualTo("/egressd");
        assertThat(c.routerId()).isEqualTo("r1");
        assertThat(c.table()).isEqualTo("egressd_router");
        assertThat(c.tableBase()).isEqualTo(7000);
        assertThat(c.blockSize()).isEqualTo(1024);
        assertThat(c.deadlineMillis()).isEqualTo(2000);
        assertThat(c.metricsListen()).isEqualTo(new InetSocketAddress("127.0.0.1", 9465));
        assertThat(c.caFile()).isNull();
        assertThat(load(REQUIRED).routerId()).as("the host name by default").isNotEmpty();
    }

    @Test
    void theFileIsReadAndFlagsWin() throws Exception
    {
        final Path file = Files.writeString(dir.resolve("r.conf"),
            "region = ams\netcd-endpoints = http://198.51.100.1:2379\nrouter-table-base = 9000\nmetrics-listen = off\n");
        final RouterConfig c = RouterConfig.load(file, Map.of("router-table-base", "12000"));
        assertThat(c.region()).isEqualTo("ams");
        assertThat(c.endpoints()).containsExactly("http://198.51.100.1:2379");
        assertThat(c.tableBase()).isEqualTo(12000);
        assertThat(c.metricsListen()).isNull();
    }

    @Test
    void aBadSettingIsNamed()
    {
        final List<Object[]> cases = List.of(
            new Object[] {Map.of("etcd-endpoints", "http://192.0.2.10:2379"), "bad setting region: missing"},
            new Object[] {Map.of("region", "ord"), "bad setting etcd-endpoints=: missing"},
            new Object[] {with("etcd-endpoints", "192.0.2.10:2379"), "bad setting etcd-endpoints="},
            new Object[] {with("router-table-base", "254"), "bad setting router-table-base=254: must be 255.."},
            new Object[] {with("router-table-base", "x"), "bad setting router-table-base=x: must be a whole number"},
            new Object[] {with("block-size", "1000"), "bad setting block-size=1000: must be a power of two"},
            new Object[] {with("router-table", "1bad"), "bad setting router-table=1bad"},
            new Object[] {with("router-id", "a b"), "bad setting router-id=a b"},
            new Object[] {with("metrics-listen", "localhost:9465"), "bad setting metrics-listen=localhost:9465"},
            new Object[] {with("etcd-cert-file", "/etc/egressd/c.pem"), "bad setting etcd-key-file"},
            new Object[] {with("uplink", "eth0"), "bad setting uplink=eth0: unknown router setting"});
        for (final Object[] c : cases)
        {
            @SuppressWarnings("unchecked")
            final Map<String, String> flags = (Map<String, String>) c[0];
            assertThatThrownBy(() -> load(flags)).isInstanceOf(BadSettingException.class)
                .hasMessageStartingWith((String) c[1]);
        }
    }

    @Test
    void anUnknownKeyInTheFileAndAMissingNamedFileAreRefused() throws Exception
    {
        final Path file = Files.writeString(dir.resolve("r.conf"), "region = ord\nledger = etcd\n");
        assertThatThrownBy(() -> RouterConfig.load(file, REQUIRED)).isInstanceOf(BadSettingException.class)
            .hasMessageContaining("ledger").hasMessageContaining("unknown router setting");
        assertThatThrownBy(() -> RouterConfig.load(dir.resolve("absent.conf"), REQUIRED))
            .hasMessageContaining("no such file");
    }
}
