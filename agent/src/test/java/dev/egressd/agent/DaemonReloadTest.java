package dev.egressd.agent;

import dev.egressd.agent.config.EgressdConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/** SIGHUP: the file is compared with the running settings, which take the reloadable ones each time. */
class DaemonReloadTest
{
    @TempDir
    Path dir;

    private EgressdConfig read(final String extra) throws Exception
    {
        final Path file = dir.resolve("egressd.conf");
        Files.writeString(file, "region = ord\nuplink = eth0\n" + extra);
        return EgressdConfig.load(file, Map.of());
    }

    @Test
    void aReloadableSettingIsAppliedEachTimeAndARestartOnlyOneIsWarnedAboutOnceAndKept() throws Exception
    {
        final EgressdConfig start = read("");
        assertThat(start.conntrackDrainSeconds()).isEqualTo(350);

        final Daemon.Reload first = Daemon.reloaded(start, read("conntrack-drain-seconds = 60\napi-group = ops\n"),
            Map.of());
        assertThat(first.config().conntrackDrainSeconds()).isEqualTo(60);
        assertThat(first.config().apiGroup()).as("restart-only: kept").isNull();
        assertThat(first.warned()).containsExactly("api-group");

        // the same file again: nothing new to say, the running drain time is already 60
        final Daemon.Reload second = Daemon.reloaded(first.config(),
            read("conntrack-drain-seconds = 60\napi-group = ops\n"), first.pending());
        assertThat(second.warned()).isEmpty();
        assertThat(second.pending()).containsEntry("api-group", "ops");
        assertThat(second.config()).isEqualTo(first.config());

        // a second change of the drain time is applied on top of the running settings
        final Daemon.Reload third = Daemon.reloaded(second.config(), read("conntrack-drain-seconds = 10\n"),
            second.pending());
        assertThat(third.config().conntrackDrainSeconds()).isEqualTo(10);
        assertThat(third.warned()).isEmpty();
        assertThat(third.pending()).isEmpty();
        assertThat(third.config().withReloadable(start)).isEqualTo(start);
    }

    @Test
    void apiGroupNeedsARestart()
    {
        assertThat(EgressdConfig.RELOADABLE).containsExactly("conntrack-drain-seconds");
    }
}
