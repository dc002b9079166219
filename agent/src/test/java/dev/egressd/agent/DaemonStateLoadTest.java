package dev.egressd.agent;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.egressd.agent.config.EgressdConfig;
import dev.egressd.agent.kernel.MemoryKernel;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateStore;
import dev.egressd.agent.testing.Scrape;

import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The state directory locked and read on a thread of its own while the kernel checks run ({@link Daemon#loadState}):
 * the daemon serves what that load read, a lock held elsewhere still stops the start with its message, and a start
 * that ends before the daemon takes the load releases the lock. A dry-run daemon (the in-memory kernel).
 */
class DaemonStateLoadTest
{
    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    private EgressdConfig config(final int port) throws Exception
    {
        final Path conf = dir.resolve("egressd.conf");
        Files.writeString(conf, "region = ord\nuplink = uplink\nblock-count = 4\napi-socket = " + dir.resolve("api.sock")
            + "\nstate-dir = " + dir.resolve("state") + "\nmetrics-listen = " + (port == 0 ? "off" : "127.0.0.1:" + port)
            + "\n");
        return EgressdConfig.load(conf, Map.of());
    }

    private void writeState() throws Exception
    {
        new StateStore(Files.createDirectories(dir.resolve("state"))).write(new DesiredState(DesiredState.VERSION,
            new DesiredState.Host("ord", 4, 1024, 1024),
            List.of(new DesiredState.App("shop", true,
                List.of(new DesiredState.Pair("203.0.113.10", "2001:db8::10", false)), List.of())),
            List.of(new DesiredState.MachineEntry("m1", "shop", "tap-m1", "10.77.0.2", null, null,
                new DesiredState.Slot("203.0.113.10", 3), null)),
            List.of()));
    }

    @Test
    void theDaemonServesTheStateALoadBegunBeforeItRead() throws Exception
    {
        writeState();
        final int port;
        try (ServerSocket free = new ServerSocket(0))
        {
            port = free.getLocalPort();
        }
        final EgressdConfig config = config(port);
        final Daemon.StateLoad load = Daemon.loadState(config.stateDir());
        final Daemon daemon = new Daemon(config, null, Map.of(), new MemoryKernel(), "test").stateLoad(load);
        try
        {
            daemon.start();
            assertThatThrownBy(() -> new StateStore(config.stateDir()).lock()).as("the daemon holds the lock")
                .hasMessageContaining("locked");
            final HttpResponse<String> scrape = http.send(HttpRequest.newBuilder(
                URI.create("http://127.0.0.1:" + port + "/metrics")).timeout(Duration.ofSeconds(30)).build(),
                HttpResponse.BodyHandlers.ofString());
            assertThat(scrape.statusCode()).isEqualTo(200);
            final double machines = Scrape.parse(scrape.body()).samples().stream()
                .filter(s -> s.name().equals("egressd_machines")).mapToDouble(Scrape.Sample::value).sum();
            assertThat(machines).as("m1, from the state file").isEqualTo(1.0);
        }
        finally
        {
            daemon.stop();
        }
        final StateStore after = new StateStore(config.stateDir());
        after.lock(); // the stop released it
        after.unlock();
    }

    @Test
    void aLockHeldElsewhereStopsTheStartWithItsMessageAndTheStoreIsLeftAsItWas() throws Exception
    {
        writeState();
        final EgressdConfig config = config(0);
        final StateStore other = new StateStore(config.stateDir());
        other.lock();
        final byte[] before = Files.readAllBytes(other.file());
        try
        {
            final Daemon daemon = new Daemon(config, null, Map.of(), new MemoryKernel(), "test")
                .stateLoad(Daemon.loadState(config.stateDir()));
            try
            {
                assertThatThrownBy(daemon::start).hasMessageContaining("already locked by this process");
            }
            finally
            {
                daemon.stop();
            }
            assertThat(Files.readAllBytes(other.file())).isEqualTo(before);
        }
        finally
        {
            other.unlock();
        }
    }

    /** Records the threads that asked for the ruleset's generation. */
    private static final class WatchedKernel extends MemoryKernel
    {
        final List<String> askedBy = new java.util.concurrent.CopyOnWriteArrayList<>();

        @Override
        public long generation()
        {
            askedBy.add(Thread.currentThread().getName());
            return super.generation();
        }
    }

    @Test
    void theLoopThreadOpensTheKernelOnlyOnceTheLockIsHeld() throws Exception
    {
        writeState();
        final EgressdConfig config = config(0);
        final StateStore other = new StateStore(config.stateDir());
        other.lock();
        final WatchedKernel refused = new WatchedKernel();
        final Daemon blocked = new Daemon(config, null, Map.of(), refused, "test")
            .stateLoad(Daemon.loadState(config.stateDir()));
        try
        {
            assertThatThrownBy(blocked::start).hasMessageContaining("locked");
        }
        finally
        {
            blocked.stop();
            other.unlock();
        }
        assertThat(refused.askedBy).as("another egressd holds the directory: the kernel is not touched").isEmpty();

        final WatchedKernel kernel = new WatchedKernel();
        final Daemon daemon = new Daemon(config, null, Map.of(), kernel, "test")
            .stateLoad(Daemon.loadState(config.stateDir()));
        try
        {
            daemon.start();
        }
        finally
        {
            daemon.stop();
        }
        assertThat(kernel.askedBy).isNotEmpty();
        assertThat(kernel.askedBy.get(0)).as("the handle belongs to the loop's thread").isEqualTo("egressd-control");
    }

    @Test
    void aStartThatEndsBeforeTheDaemonTakesTheLoadReleasesTheLock() throws Exception
    {
        writeState();
        final EgressdConfig config = config(0);
        final Daemon.StateLoad load = Daemon.loadState(config.stateDir());
        load.abandon();
        final StateStore next = new StateStore(config.stateDir());
        next.lock();
        assertThat(next.load().state().machines()).hasSize(1);
        next.unlock();
    }
}
