package dev.egressd.agent.testing;

import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The real router role, {@code egressd router} from the built jar, as its own process in a {@link RegionLab}'s
 * router namespace ({@code ip netns exec P-rtr java -jar egressd.jar router ...}; {@code ip netns exec} execs, so
 * {@link #kill9()} is a real {@code kill -9} of the router). It runs in the foreground; ready means its nft table
 * {@code egressd_router} exists and it has (re)written its {@code routers/<id>} key in etcd (it has applied the
 * region once).
 */
public final class RouterProcess extends JarProcess
{
    /** The nft table the router role owns. */
    public static final String TABLE = "egressd_router";
    private static final String PREFIX = "/egressd";

    private final RegionLab lab;
    private final String id;
    private final String etcdEndpoint;
    private final List<String> extra;

    RouterProcess(final RegionLab lab, final String id, final String etcdEndpoint, final Path dir,
        final String... extra) throws IOException
    {
        super("egressd router", Files.createDirectories(dir).resolve("router-" + id + ".log"));
        this.lab = lab;
        this.id = id;
        this.etcdEndpoint = etcdEndpoint;
        this.extra = Arrays.asList(extra);
    }

    /** @return the router id. */
    public String id()
    {
        return id;
    }

    /**
     * Starts the router and waits until it is ready: its table exists and it has published its record anew (a
     * later modification of {@code routers/<id>} than before the start: after a {@code kill -9} the old process's
     * record stays until its lease expires, and must not count).
     *
     * @return milliseconds from process start to ready.
     * @throws Exception if it does not get ready within 30 s.
     */
    public long start() throws Exception
    {
        final long before = Math.max(0, record().modRevision());
        final List<String> cmd = new ArrayList<>(lab.inside("rtr",
            java(), "-jar",
            jar().toString(), "router", "--region", RegionLab.REGION, "--etcd-endpoints", etcdEndpoint,
            "--router-id", id, "--metrics-listen", "off"));
        cmd.addAll(extra);
        final long t0 = launch(cmd);
        final long deadline = t0 + TimeUnit.SECONDS.toNanos(30);
        Record last = record();
        while (System.nanoTime() < deadline)
        {
            failIfExited();
            last = record();
            if (last.modRevision() > before && tablePresent())
            {
                return (System.nanoTime() - t0) / 1_000_000;
            }
            Thread.sleep(50);
        }
        fail("egressd router not ready within 30 s (table " + tablePresent() + ", record " + last + " after "
            + before + "):\n" + tail());
        return -1;
    }

    /** @return whether the router namespace holds the router's nft table. */
    public boolean tablePresent()
    {
        final Shell.Exec tables = lab.exec("rtr", "nft", "list", "tables");
        return tables.ok() && tables.output().contains(" " + TABLE);
    }

    /**
     * The router's record in etcd, {@code routers/<id>}, read with {@code etcdctl} inside the router namespace.
     *
     * @param modRevision the key's last modification, 0 if absent, -1 if etcd cannot be read.
     * @param value       its value (JSON text), or null.
     */
    public record Record(long modRevision, String value)
    {
        /** @return the revision the router says it has applied ({@code "applied"}), or -1. */
        public long applied()
        {
            if (value == null)
            {
                return -1;
            }
            try
            {
                return ApiClient.JSON.readTree(value).path("applied").asLong(-1);
            }
            catch (final IOException e)
            {
                return -1;
            }
        }
    }

    /** @return the router's record in etcd now. */
    public Record record()
    {
        final Shell.Output got = lab.execApart(Duration.ofSeconds(5), "rtr", "etcdctl", "--endpoints", etcdEndpoint,
            "--command-timeout=2s", "get", PREFIX + "/" + RegionLab.REGION + "/routers/" + id, "-w", "json");
        if (got.exitCode() != 0)
        {
            return new Record(-1, null);
        }
        try
        {
            final JsonNode kvs = ApiClient.JSON.readTree(got.stdout()).path("kvs");
            if (kvs.size() == 0)
            {
                return new Record(0, null);
            }
            final JsonNode kv = kvs.get(0);
            return new Record(kv.path("mod_revision").asLong(), new String(java.util.Base64.getDecoder()
                .decode(kv.path("value").asText()), java.nio.charset.StandardCharsets.UTF_8));
        }
        catch (final IOException | IllegalArgumentException e)
        {
            return new Record(-1, null);
        }
    }
}
