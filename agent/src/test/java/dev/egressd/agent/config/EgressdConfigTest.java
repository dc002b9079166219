package dev.egressd.agent.config;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import dev.egressd.core.model.AddressDevice;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class EgressdConfigTest
{
    @TempDir
    Path dir;

    private static Map<String, String> flags(final String... kv)
    {
        final Map<String, String> map = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2)
        {
            map.put(kv[i], kv[i + 1]);
        }
        return map;
    }

    @Test
    void defaultsApplyWhenOnlyRequiredSettingsAreGiven() throws Exception
    {
        final Path file = dir.resolve("egressd.conf");
        Files.writeString(file, "# comment\nregion = ord\nuplink=eth0\n");
        final EgressdConfig config = EgressdConfig.load(file, Map.of());
        assertThat(config.region()).isEqualTo("ord");
        assertThat(config.uplink()).isEqualTo("eth0");
        assertThat(config.guestInterfaces()).isEqualTo("tap-*");
        assertThat(config.apiSocket()).isEqualTo(Path.of("/run/egressd/api.sock"));
        assertThat(config.apiGroup()).isNull();
        assertThat(config.metricsListen().getPort()).isEqualTo(9464);
        assertThat(config.metricsListen().getHostString()).isEqualTo("127.0.0.1");
        assertThat(config.stateDir()).isEqualTo(Path.of("/var/lib/egressd"));
        assertThat(config.table()).isEqualTo("egressd");
        assertThat(config.destinationCap()).isEqualTo(1024);
        assertThat(config.blockCount()).isEqualTo(64);
        assertThat(config.blockSize()).isEqualTo(1024);
        assertThat(config.conntrackDrainSeconds()).isEqualTo(350);
        assertThat(config.hostSettings().layout().blockCount()).isEqualTo(64);
    }

    @Test
    void theRegionLedgerSettingsAreCheckedNamingTheSetting() throws Exception
    {
        final Path file = dir.resolve("egressd.conf");
        Files.writeString(file, "region=ord\nuplink=eth0\n");
        final EgressdConfig local = EgressdConfig.load(file, Map.of());
        assertThat(local.ledger().etcd()).isFalse();
        assertThat(local.ledger().prefix()).isEqualTo("/egressd");
        assertThat(local.ledger().deadlineMillis()).isEqualTo(2000);
        assertThat(local.ledger().quarantineSeconds()).isEqualTo(120);
        assertThat(local.ledger().routerConfirmMillis()).isEqualTo(3000);
        assertThat(local.ledger().hostId()).isNotEmpty();
        final EgressdConfig region = EgressdConfig.load(file, flags("ledger", "etcd", "etcd-endpoints",
            "http://192.0.2.10:2379, https://192.0.2.11:2379", "host-id", "h1", "region-host-addresses",
            "192.0.2.21,2001:db8::21", "router-confirm-ms", "0"));
        assertThat(region.ledger().routerConfirmMillis()).as("0: no wait").isZero();
        assertThat(region.ledger().etcd()).isTrue();
        assertThat(region.ledger().endpoints()).containsExactly("http://192.0.2.10:2379", "https://192.0.2.11:2379");
        assertThat(region.ledger().hostId()).isEqualTo("h1");
        assertThat(region.ledger().hostAddresses()).containsExactly("192.0.2.21", "2001:db8::21");
        assertThat(region.asMap()).containsEntry("ledger", "etcd").containsEntry("host-id", "h1");
        for (final String[] bad : new String[][] {
            {"ledger", "zookeeper"}, {"etcd-endpoints", "192.0.2.10:2379"}, {"host-id", "h/1"},
            {"etcd-deadline-ms", "50"}, {"region-quarantine-seconds", "-1"}, {"etcd-prefix", "egressd"},
            {"region-host-addresses", "host.example"}, {"etcd-cert-file", "/etc/egressd/c.pem"},
            {"router-confirm-ms", "-1"}, {"router-confirm-ms", "60001"}, {"router-confirm-ms", "3s"}})
        {
            assertThatThrownBy(() -> EgressdConfig.load(file, flags("ledger", "etcd", "etcd-endpoints",
                "http://192.0.2.10:2379", bad[0], bad[1])))
                .as("%s=%s", bad[0], bad[1]).isInstanceOf(BadSettingException.class)
                .hasMessageContaining(bad[0].equals("etcd-cert-file") ? "etcd-" : bad[0]);
        }
        assertThatThrownBy(() -> EgressdConfig.load(file, flags("ledger", "etcd")))
            .isInstanceOf(BadSettingException.class).hasMessageContaining("etcd-endpoints");
    }

    @Test
    void pairAddressDeviceDefaultsByTheLedgerAndABadValueNamesTheSetting() throws Exception
    {
        final Path file = dir.resolve("egressd.conf");
        Files.writeString(file, "region=ord\nuplink=eth0\n");
        final EgressdConfig local = EgressdConfig.load(file, Map.of());
        assertThat(local.pairAddressDevice()).isEqualTo(AddressDevice.UPLINK);
        assertThat(local.hostSettings().pairAddressDevice()).isEqualTo(AddressDevice.UPLINK);
        assertThat(local.asMap()).containsEntry("pair-address-device", "uplink");
        assertThat(local.addressWarnings()).isEmpty();
        final EgressdConfig region = EgressdConfig.load(file, flags("ledger", "etcd", "etcd-endpoints",
            "http://192.0.2.10:2379"));
        assertThat(region.pairAddressDevice()).isEqualTo(AddressDevice.LO);
        assertThat(region.hostSettings().pairAddressDevice()).isEqualTo(AddressDevice.LO);
        assertThat(region.asMap()).containsEntry("pair-address-device", "lo");
        assertThat(region.addressWarnings()).isEmpty();

        // chosen against the ledger's default: allowed, with a warning saying what it costs
        final EgressdConfig regionOnUplink = EgressdConfig.load(file, flags("ledger", "etcd", "etcd-endpoints",
            "http://192.0.2.10:2379", "pair-address-device", "uplink"));
        assertThat(regionOnUplink.hostSettings().pairAddressDevice()).isEqualTo(AddressDevice.UPLINK);
        assertThat(regionOnUplink.addressWarnings()).singleElement().asString()
            .startsWith("pair-address-device=uplink with ledger=etcd: every host holding a slot of a shared pair "
                + "answers ARP/ND");
        final EgressdConfig localOnLo = EgressdConfig.load(file, flags("pair-address-device", "lo"));
        assertThat(localOnLo.pairAddressDevice()).isEqualTo(AddressDevice.LO);
        assertThat(localOnLo.addressWarnings()).singleElement().asString().contains("ledger=local");

        assertThatThrownBy(() -> EgressdConfig.load(file, flags("pair-address-device", "loopback")))
            .isInstanceOf(BadSettingException.class)
            .hasMessage("bad setting pair-address-device=loopback: must be uplink or lo (empty: lo with "
                + "ledger=etcd, uplink with ledger=local)");
        assertThatThrownBy(() -> EgressdConfig.load(file, flags("uplink", "lo", "pair-address-device", "lo")))
            .isInstanceOf(BadSettingException.class).hasMessageContaining("pair-address-device=lo")
            .hasMessageContaining("uplink=lo");
        assertThat(EgressdConfig.load(file, flags("uplink", "lo", "ledger", "etcd", "etcd-endpoints",
            "http://192.0.2.10:2379")).pairAddressDevice()).as("nothing to choose when the uplink is lo")
            .isEqualTo(AddressDevice.UPLINK);
    }

    @Test
    void flagsOverrideTheFile() throws Exception
    {
        final Path file = dir.resolve("egressd.conf");
        Files.writeString(file, "region=ord\nuplink=eth0\ndestination-cap=10\nblock-count=4\n");
        final EgressdConfig config = EgressdConfig.load(file, flags("destination-cap", "20", "region", "ams",
            "block-size", "16", "metrics-listen", "[::1]:9000", "api-group", "egressd"));
        assertThat(config.destinationCap()).isEqualTo(20);
        assertThat(config.region()).isEqualTo("ams");
        assertThat(config.blockCount()).isEqualTo(4);
        assertThat(config.blockSize()).isEqualTo(16);
        assertThat(config.metricsListen().getPort()).isEqualTo(9000);
        assertThat(config.apiGroup()).isEqualTo("egressd");
        assertThat(config.asMap()).containsEntry("metrics-listen", "[0:0:0:0:0:0:0:1]:9000");
    }

    @Test
    void anAbsentDefaultFileIsFineButAnAbsentNamedFileIsNot() throws Exception
    {
        assertThatThrownBy(() -> EgressdConfig.load(dir.resolve("nope.conf"), flags("region", "ord", "uplink", "e")))
            .isInstanceOf(BadSettingException.class)
            .hasMessageStartingWith("bad setting config=")
            .hasMessageEndingWith("no such file");
    }

    @Test
    void metricsCanBeTurnedOff() throws Exception
    {
        final EgressdConfig config = EgressdConfig.of(values("metrics-listen", "off"));
        assertThat(config.metricsListen()).isNull();
    }

    @Test
    void anUnknownKeyInTheFileIsNamed() throws IOException
    {
        final Path file = dir.resolve("egressd.conf");
        Files.writeString(file, "region=ord\nuplink=eth0\ndestination_cap=10\n");
        assertThatThrownBy(() -> EgressdConfig.load(file, Map.of()))
            .isInstanceOf(BadSettingException.class)
            .hasMessageStartingWith("bad setting destination_cap=10: unknown setting");
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
        "destination-cap|0|bad setting destination-cap=0: must be 1..65535",
        "destination-cap|65536|bad setting destination-cap=65536: must be 1..65535",
        "destination-cap|lots|bad setting destination-cap=lots: must be a whole number 1..65535",
        "region|ORD|bad setting region=ORD: must be 1..63 of a-z, 0-9 and '-', e.g. ord",
        "region||bad setting region: missing: set region= in the config file or --region",
        "uplink|eth0/1|bad setting uplink=eth0/1: must be an interface name of 1..15 letters, digits, '_', '.', '-'",
        "guest-interfaces|ta*p|bad setting guest-interfaces=ta*p: must be an interface name or a prefix ending in '*', e.g. tap-*",
        "api-socket|run/api.sock|bad setting api-socket=run/api.sock: must be an absolute path",
        "state-dir|var|bad setting state-dir=var: must be an absolute path",
        "block-count|65|bad setting block-count=65: must be 1..64",
        "block-size|1000|bad setting block-size=1000: must be a power of two in 2..1024",
        "block-size|4096|bad setting block-size=4096: must be 2..1024",
        "metrics-listen|localhost:9464|bad setting metrics-listen=localhost:9464: the host must be an IP address literal, not a name",
        "metrics-listen|127.0.0.1:0|bad setting metrics-listen=127.0.0.1:0: the port must be 1..65535",
        "metrics-listen|9464|bad setting metrics-listen=9464: must be host:port (e.g. 127.0.0.1:9464, [::1]:9464) or off",
        "table|egress-d|bad setting table=egress-d: must be 1..32 letters, digits or '_', starting with a letter",
        "conntrack-drain-seconds|-1|bad setting conntrack-drain-seconds=-1: must be 0..86400",
        "api-group|wheel group|bad setting api-group=wheel group: must be a group name, or empty for root only",
    })
    void aBadSettingIsNamedInOneLine(final String key, final String value, final String message)
    {
        assertThatThrownBy(() -> EgressdConfig.of(values(key, value == null ? "" : value)))
            .isInstanceOf(BadSettingException.class)
            .hasMessage(message)
            .satisfies(e -> assertThat(((BadSettingException)e).key()).isEqualTo(key));
    }

    @Test
    void aBadFlagIsNamedToo()
    {
        assertThatThrownBy(() -> EgressdConfig.load(dir.resolve("none"), flags("region", "ord")))
            .isInstanceOf(BadSettingException.class);
        assertThatThrownBy(() -> EgressdConfig.of(values("block-count", "1024")))
            .hasMessage("bad setting block-count=1024: must be 1..64");
    }

    private static Map<String, String> values(final String key, final String value)
    {
        final Map<String, String> map = new LinkedHashMap<>(EgressdConfig.DEFAULTS);
        map.put("region", "ord");
        map.put("uplink", "eth0");
        map.put(key, value);
        return map;
    }
}
