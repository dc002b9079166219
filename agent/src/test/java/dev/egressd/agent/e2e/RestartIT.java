package dev.egressd.agent.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.state.KernelSeen;
import dev.egressd.agent.testing.DaemonLabTest;
import dev.egressd.agent.testing.Lab;
import dev.egressd.agent.testing.Privileged;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A restart of the real daemon and the table the last clean stop saw in sync ({@link KernelSeen},
 * docs/operations.md, "Start-up"): trusted without a read when nothing changed the kernel while egressd was down,
 * read whole and repaired when something did; and drift after a trusted start still repaired by the reconcile.
 */
@Privileged
class RestartIT extends DaemonLabTest
{
    private static final String TRUSTED = "not read at start";
    private static final String READ = "kernel: read at start: ";
    private static final String GUEST4 = "10.77.0.2";

    private void machine() throws IOException
    {
        api.put("/v1/apps/shop", "{\"fail_closed\": true}").ok();
        api.post("/v1/apps/shop/pairs", "{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8:10::10\"}").ok();
        api.put("/v1/machines/m1", "{\"app\": \"shop\", \"interface\": \"tap-g1\", \"ipv4\": \"" + GUEST4
            + "\", \"ipv6\": \"fd77::2\"}").ok();
    }

    private String snat4()
    {
        return lab.exec("host", "nft", "list", "map", "inet", "egressd", "snat4").output();
    }

    /** The log lines of the daemon's last run (after the last "stopped" line of the one before, if any). */
    private List<String> lastRun() throws IOException
    {
        final List<String> lines = Files.readAllLines(daemon.log());
        int from = 0;
        for (int i = 0; i < lines.size() - 1; i++)
        {
            if (lines.get(i).contains("egressd stopped"))
            {
                from = i + 1;
            }
        }
        return lines.subList(from, lines.size());
    }

    private boolean logged(final String text) throws IOException
    {
        return lastRun().stream().anyMatch(l -> l.contains(text));
    }

    /**
     * Waits for two more reconcile passes (counted in the health): the second one's read began after everything
     * before this call, so it proves the table as it is now.
     */
    private void awaitTwoReads() throws Exception
    {
        awaitReconciles(api.get("/v1/health").ok().json().path("reconciles").asInt() + 2);
    }

    private void awaitReconciles(final int atLeast) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (System.nanoTime() < deadline)
        {
            if (api.get("/v1/health").ok().json().path("reconciles").asInt() >= atLeast)
            {
                return;
            }
            Thread.sleep(50);
        }
        throw new AssertionError("no reconcile within 20 s:\n" + daemon.tail());
    }

    private Path record()
    {
        return workDir.resolve("state").resolve(KernelSeen.FILE);
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void aTableNothingChangedIsTrustedAndOneChangedByHandIsReadAndRepaired() throws Exception
    {
        start(Lab.tagged("rstrt", 1));
        machine();
        final String held = snat4();
        assertThat(held).contains(GUEST4);
        awaitTwoReads(); // a read after the last change: it proves the table at its generation
        assertThat(daemon.stop()).isEqualTo(143);
        assertThat(record()).as("the stop's record").exists();

        // 1. nothing changed while it was down: the table is not read at start, and in sync
        daemon.start();
        assertThat(logged(TRUSTED)).as(daemon.tail()).isTrue();
        assertThat(logged(READ)).isFalse();
        assertThat(record()).as("taken: good for one start").doesNotExist();
        assertThat(api.get("/v1/health").ok().json().path("kernel").asText()).isEqualTo("in_sync");
        assertThat(snat4()).isEqualTo(held);
        // the reconcile reads it whole at once; drift after the trusted start is repaired as ever
        awaitReconciles(2);
        assertThat(lab.exec("host", "nft", "delete", "element", "inet", "egressd", "snat4", "{ " + GUEST4 + " }")
            .ok()).isTrue();
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!snat4().contains(GUEST4) && System.nanoTime() < deadline)
        {
            Thread.sleep(50);
        }
        assertThat(snat4()).as("drift after a trusted start repaired").isEqualTo(held);
        awaitTwoReads();

        // 2. the table changed by hand while egressd was down: the start reads it whole and repairs it
        assertThat(daemon.stop()).isEqualTo(143);
        assertThat(record()).exists();
        assertThat(lab.exec("host", "nft", "delete", "element", "inet", "egressd", "snat4", "{ " + GUEST4 + " }")
            .ok()).isTrue();
        assertThat(snat4()).doesNotContain(GUEST4);
        daemon.start();
        assertThat(logged(READ + "the ruleset's generation moved")).as(daemon.tail()).isTrue();
        assertThat(logged(TRUSTED)).isFalse();
        assertThat(api.get("/v1/health").ok().json().path("kernel").asText()).isEqualTo("in_sync");
        assertThat(snat4()).as("repaired by the start's own sync, before in_sync").isEqualTo(held);
    }
}
