package dev.egressd.agent.metrics;

import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
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
    void theRuleFileInTheOperationsGuideIsValid() throws Exception
    {
        final Path promtool = promtool();
        final String doc = Files.readString(Path.of("..", "docs", "operations.md"));
        final int section = doc.indexOf("## Rule file");
        assertThat(section).as("docs/operations.md has a rule file").isNotNegative();
        final int start = doc.indexOf("```yaml\n", section) + "```yaml\n".length();
        final int end = doc.indexOf("```", start);
        final Path rules = dir.resolve("egressd-rules.yml");
        Files.writeString(rules, doc.substring(start, end));
        final Process process = new ProcessBuilder(promtool.toString(), "check", "rules", rules.toString())
            .redirectErrorStream(true).start();
        final String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(process.waitFor(30, TimeUnit.SECONDS)).as("promtool finished").isTrue();
        assertThat(process.exitValue()).as("promtool check rules: %s", output).isZero();
        assertThat(output).contains("SUCCESS: 17 rules found");
    }

    private static Path promtool()
    {
        return Requirements.tool("promtool", "Debian package prometheus; scripts/install-deps");
    }
}
