package dev.egressd.agent;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.egressd.agent.config.EgressdConfig;
import dev.egressd.agent.kernel.MemoryKernel;
import dev.egressd.agent.testing.ApiClient;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import dev.egressd.agent.testing.Scrape;

import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code GET /metrics} is served twice: on the API socket (with the API) and on {@code metrics-listen} (TCP,
 * nothing but {@code /metrics}). A dry-run daemon (the in-memory kernel) serves both here.
 */
class DaemonMetricsTest
{
    private static final String PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8";

    @TempDir
    Path dir;

    private Daemon daemon;
    private int port;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    @BeforeEach
    void start() throws Exception
    {
        try (ServerSocket free = new ServerSocket(0))
        {
            port = free.getLocalPort();
        }
        final Path conf = dir.resolve("egressd.conf");
        Files.writeString(conf, "region = ord\nuplink = uplink\napi-socket = " + dir.resolve("api.sock") + "\n"
            + "state-dir = " + dir.resolve("state") + "\nmetrics-listen = 127.0.0.1:" + port + "\n");
        daemon = new Daemon(EgressdConfig.load(conf, Map.of()), conf, Map.of(), new MemoryKernel(), "test");
        daemon.start();
    }

    @AfterEach
    void stop()
    {
        if (daemon != null)
        {
            daemon.stop();
        }
    }

    private HttpResponse<String> tcp(final String method, final String path) throws Exception
    {
        return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
            .method(method, HttpRequest.BodyPublishers.noBody()).timeout(Duration.ofSeconds(30)).build(),
            HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void metricsListenServesTheScrapeAndNothingOfTheApi() throws Exception
    {
        final HttpResponse<String> scrape = tcp("GET", "/metrics");
        assertThat(scrape.statusCode()).isEqualTo(200);
        assertThat(scrape.headers().firstValue("Content-Type")).contains(PROMETHEUS_TEXT);
        assertThat(scrape.body()).contains("# TYPE egressd_kernel_up gauge", "egressd_destination_cap");
        assertThat(Scrape.parse(scrape.body()).samples()).isNotEmpty();
        assertThat(tcp("GET", "/metrics").statusCode()).as("again, on a new request").isEqualTo(200);

        for (final String api : new String[] {"/v1/health", "/v1/state", "/v1/apps/shop", "/", "/nothing"})
        {
            assertThat(tcp("GET", api).statusCode()).as("GET %s over TCP", api).isEqualTo(404);
        }
        assertThat(tcp("DELETE", "/v1/recovered").statusCode()).as("no API mutation over TCP").isEqualTo(404);
    }

    @Test
    void aMetricsAddressInUseStopsStartUp(@TempDir final Path other) throws Exception
    {
        final Path conf = other.resolve("egressd.conf");
        Files.writeString(conf, "region = ord\nuplink = uplink\napi-socket = " + other.resolve("api.sock") + "\n"
            + "state-dir = " + other.resolve("state") + "\nmetrics-listen = 127.0.0.1:" + port + "\n");
        final Daemon second = new Daemon(EgressdConfig.load(conf, Map.of()), conf, Map.of(), new MemoryKernel(), "test");
        try
        {
            assertThatThrownBy(second::start).hasMessageContaining("Address already in use");
        }
        finally
        {
            second.stop();
        }
        assertThat(tcp("GET", "/metrics").statusCode()).as("the first daemon still serves").isEqualTo(200);
    }

    @Test
    void aRestartBindsMetricsListenAgainAtOnce() throws Exception
    {
        // a scrape the server ends (Connection: close) leaves its side of the connection in TIME_WAIT
        try (Socket scraper = new Socket("127.0.0.1", port))
        {
            scraper.getOutputStream().write(("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .getBytes(StandardCharsets.US_ASCII));
            assertThat(new String(scraper.getInputStream().readAllBytes(), StandardCharsets.UTF_8))
                .startsWith("HTTP/1.1 200");
        }
        daemon.stop();
        daemon = new Daemon(EgressdConfig.load(dir.resolve("egressd.conf"), Map.of()), dir.resolve("egressd.conf"),
            Map.of(), new MemoryKernel(), "test");
        daemon.start();
        assertThat(tcp("GET", "/metrics").statusCode()).isEqualTo(200);
    }

    @Test
    @Privileged
    void theSocketServesTheSameSeries() throws Exception
    {
        Requirements.root(); // the API socket answers root (and the api-group) only
        final ApiClient.Response socket = new ApiClient(dir.resolve("api.sock")).get("/metrics");
        assertThat(socket.status()).isEqualTo(200);
        final HttpResponse<String> tcp = tcp("GET", "/metrics");
        assertThat(tcp.headers().firstValue("Content-Type")).contains(PROMETHEUS_TEXT);
        assertThat(names(tcp.body())).isEqualTo(names(socket.text())).contains("egressd_kernel_up");
    }

    private static Set<String> names(final String scrape)
    {
        final Set<String> names = new TreeSet<>();
        Scrape.parse(scrape).samples().forEach(s -> names.add(s.name()));
        // the GC pause series appear at the first collection, which may fall between two scrapes
        names.removeIf(n -> n.startsWith("jvm_gc_pause_"));
        return names;
    }
}
