package dev.egressd.agent.metrics;

import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code promtool check metrics} (Debian package {@code prometheus}, installed by scripts/install-deps) on a scrape
 * of a populated registry must find nothing to fix. Skipped without promtool, except under
 * {@code EGRESSD_REQUIRE_PRIVILEGED=1} (CI), where that is a failure.
 */
@Privileged
class PromtoolCheckTest
{
    @TempDir
    Path dir;

    @Test
    void promtoolFindsNothingToFix() throws Exception
    {
        final Path promtool = promtool();
        final String scrape = PrometheusScrapeTest.populatedScrape(dir);
        Files.createDirectories(Path.of("target"));
        Files.writeString(Path.of("target", "promtool-scrape.txt"), scrape); // kept for a look when it fails
        final Process process = new ProcessBuilder(promtool.toString(), "check", "metrics")
            .redirectErrorStream(true).start();
        try (OutputStream in = process.getOutputStream())
        {
            in.write(scrape.getBytes(StandardCharsets.UTF_8));
        }
        final String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(process.waitFor(30, TimeUnit.SECONDS)).as("promtool finished").isTrue();
        assertThat(output).as("promtool check metrics output").isEmpty();
        assertThat(process.exitValue()).as("promtool exit code").isZero();
    }

    @Test
    void theShippedRuleFileIsValidAndItsUnitTestsPass() throws Exception
    {
        final Path promtool = promtool();
        final Path rules = Path.of("..", "scripts", "prometheus", "egressd-rules.yml").toAbsolutePath().normalize();
        final String checked = run(rules.getParent(), promtool.toString(), "check", "rules", rules.toString());
        assertThat(checked).contains("SUCCESS: 23 rules found");
        final String tested = run(rules.getParent(), promtool.toString(), "test", "rules", "egressd-rules.test.yml");
        assertThat(tested).contains("SUCCESS");
    }

    /** Each rule's expression is the one its section of the operations guide explains, and has its runbook link. */
    @Test
    void everyShippedRuleIsTheOneTheOperationsGuideExplains() throws Exception
    {
        final String doc = Files.readString(Path.of("..", "docs", "operations.md"));
        final List<String> lines = Files.readAllLines(Path.of("..", "scripts", "prometheus", "egressd-rules.yml"));
        int alerts = 0;
        for (final String line : lines)
        {
            final String t = line.strip();
            if (t.startsWith("- alert: "))
            {
                alerts++;
            }
            else if (t.startsWith("expr: "))
            {
                // a combined rule ("X and on (instance) Y") is explained by its first part and prose
                final String expr = t.substring("expr: ".length()).split(" and on ")[0];
                assertThat(doc).as("docs/operations.md explains %s", t).contains(expr);
            }
            else if (t.startsWith("runbook_url: \"docs/operations.md#"))
            {
                final String anchor = t.substring(t.indexOf('#') + 1, t.length() - 1);
                assertThat(anchors(doc)).as("a section for %s", anchor).contains(anchor);
            }
        }
        assertThat(alerts).isEqualTo(23);
        assertThat(lines.stream().filter(l -> l.strip().startsWith("summary: "))).hasSize(23);
    }

    /** GitHub's anchors of the guide's sections. */
    private static List<String> anchors(final String doc)
    {
        return doc.lines().filter(l -> l.startsWith("## ")).map(l -> l.substring(3).strip().toLowerCase(Locale.ROOT)
            .replaceAll("[^a-z0-9 -]", "").replace(' ', '-')).toList();
    }

    private static String run(final Path dir, final String... cmd) throws Exception
    {
        final Process process = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        final String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(process.waitFor(60, TimeUnit.SECONDS)).as("promtool finished").isTrue();
        assertThat(process.exitValue()).as("%s: %s", String.join(" ", cmd), output).isZero();
        return output;
    }

    private static Path promtool()
    {
        return Requirements.tool("promtool", "Debian package prometheus; scripts/install-deps");
    }
}
