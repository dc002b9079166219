package dev.egressd.agent;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.config.EgressdConfig;
import dev.egressd.agent.kernel.MemoryKernel;
import dev.egressd.agent.testing.ApiClient;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A dry-run daemon (the in-memory kernel) with {@code -Degressd.loop-thread=event-loop}: its control loop on the
 * API's event loop starts, serves changes, and stops with its last snapshot written, which the next start (with
 * the loop on a thread of its own) reads back.
 */
@Timeout(60)
class DaemonLoopOnEventLoopTest
{
    @TempDir
    Path dir;

    private Daemon daemon(final Path conf, final boolean onEventLoop) throws Exception
    {
        if (!onEventLoop)
        {
            return new Daemon(EgressdConfig.load(conf, Map.of()), conf, Map.of(), new MemoryKernel(), "test");
        }
        System.setProperty(Daemon.LOOP_THREAD, "event-loop");
        try
        {
            return new Daemon(EgressdConfig.load(conf, Map.of()), conf, Map.of(), new MemoryKernel(), "test");
        }
        finally
        {
            System.clearProperty(Daemon.LOOP_THREAD);
        }
    }

    @Test
    void theLoopOnTheEventLoopServesChangesAndStopsWithItsStateOnDisk() throws Exception
    {
        final Path socket = dir.resolve("api.sock");
        final Path conf = dir.resolve("egressd.conf");
        Files.writeString(conf, "region = ord\nuplink = uplink\napi-socket = " + socket + "\nstate-dir = "
            + dir.resolve("state") + "\n");
        final Daemon shared = daemon(conf, true);
        try
        {
            shared.start();
            final ApiClient api = new ApiClient(socket);
            api.post("/v1/apps/a1/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\"}").ok();
            for (int i = 0; i < 20; i++)
            {
                assertThat(api.put("/v1/machines/m" + i, "{\"app\": \"a1\", \"interface\": \"tap-m" + i
                    + "\", \"ipv4\": \"10.77.0." + (2 + i) + "\"}").ok().json().path("id").asText()).isEqualTo("m" + i);
            }
            assertThat(api.get("/v1/machines/m19").ok().json().path("egress").path("ipv4").asText())
                .isEqualTo("203.0.113.10");
            // the loop's thread is Netty's: its stack runs from the event loop's run loop
            final boolean onEventLoop = Thread.getAllStackTraces().entrySet().stream()
                .filter(e -> e.getKey().getName().equals("egressd-control"))
                .anyMatch(e -> java.util.Arrays.stream(e.getValue())
                    .anyMatch(f -> f.getClassName().startsWith("io.netty.")));
            assertThat(onEventLoop).isTrue();
        }
        finally
        {
            shared.stop();
        }
        final Daemon next = daemon(conf, false);
        try
        {
            next.start();
            final ApiClient api = new ApiClient(socket);
            for (int i = 0; i < 20; i++)
            {
                assertThat(api.get("/v1/machines/m" + i).status()).as("m" + i + " after the restart").isEqualTo(200);
            }
        }
        finally
        {
            next.stop();
        }
    }
}
