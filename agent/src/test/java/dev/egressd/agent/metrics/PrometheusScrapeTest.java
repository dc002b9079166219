package dev.egressd.agent.metrics;

import dev.egressd.agent.version.Version;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static dev.egressd.agent.metrics.MetricsFixture.machine;
import static org.assertj.core.api.Assertions.assertThat;

/** The scrape text as Prometheus reads it: every line well-formed, every family described and typed. */
class PrometheusScrapeTest
{
    private static final Pattern HELP = Pattern.compile("# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)");
    private static final Pattern TYPE =
        Pattern.compile("# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)");
    private static final Pattern SAMPLE = Pattern.compile("([a-zA-Z_:][a-zA-Z0-9_:]*)"
        + "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\\\n]|\\\\.)*\"(?:,[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\\\n]|\\\\.)*\")*\\})?"
        + " (-?[0-9.]+(?:[eE][-+]?[0-9]+)?|NaN|[+-]Inf)");

    /** Every egressd family as scraped, with its type. */
    static final Map<String, String> FAMILIES = Map.ofEntries(
        Map.entry("egressd_pair_used_slots", "gauge"),
        Map.entry("egressd_pair_capacity_slots", "gauge"),
        Map.entry("egressd_machines", "gauge"),
        Map.entry("egressd_machine_busiest_destination_ratio", "gauge"),
        Map.entry("egressd_machines_saturated", "gauge"),
        Map.entry("egressd_destination_cap_connections", "gauge"),
        Map.entry("egressd_conntrack_connections", "gauge"),
        Map.entry("egressd_block_violations_total", "counter"),
        Map.entry("egressd_conntrack_events_total", "counter"),
        Map.entry("egressd_conntrack_resyncs_total", "counter"),
        Map.entry("egressd_conntrack_entries", "gauge"),
        Map.entry("egressd_conntrack_max", "gauge"),
        Map.entry("egressd_conntrack_drops_total", "counter"),
        Map.entry("egressd_conntrack_insert_failed_total", "counter"),
        Map.entry("egressd_cap_refused_packets_total", "counter"),
        Map.entry("egressd_spoof_dropped_packets_total", "counter"),
        Map.entry("egressd_failclosed_refused_packets_total", "counter"),
        Map.entry("egressd_backstop_dropped_packets_total", "counter"),
        Map.entry("egressd_reconcile_runs_total", "counter"),
        Map.entry("egressd_reconcile_failures_total", "counter"),
        Map.entry("egressd_reconcile_repairs_total", "counter"),
        Map.entry("egressd_reconcile_reads_stuck_total", "counter"),
        Map.entry("egressd_reconcile_table_reads_total", "counter"),
        Map.entry("egressd_change_batches_total", "counter"),
        Map.entry("egressd_state_write_failures_total", "counter"),
        Map.entry("egressd_desired_plan_mismatches_total", "counter"),
        Map.entry("egressd_kernel_up", "gauge"),
        Map.entry("egressd_build_info", "gauge"),
        Map.entry("egressd_reconcile_duration_seconds", "histogram"),
        Map.entry("egressd_reconcile_duration_seconds_max", "gauge"),
        Map.entry("egressd_reconcile_last_success_timestamp_seconds", "gauge"),
        Map.entry("egressd_kernel_consecutive_failures", "gauge"),
        Map.entry("egressd_changes_total", "counter"),
        Map.entry("egressd_change_latency_seconds", "histogram"),
        Map.entry("egressd_change_latency_seconds_max", "gauge"));

    @TempDir
    Path dir;

    private MetricsFixture f;
    private PrometheusMeterRegistry registry;
    private EgressMetrics metrics;

    /**
     * A scrape of a populated registry, with the JVM and process meters the daemon also serves.
     *
     * @param dir a state directory.
     * @return the scrape text.
     * @throws Exception if the loop fails.
     */
    static String populatedScrape(final Path dir) throws Exception
    {
        final MetricsFixture f = new MetricsFixture(dir);
        final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        final EgressMetrics metrics = new EgressMetrics(f.loop);
        EgressMetrics.bindProcessMeters(registry);
        metrics.bindTo(registry);
        f.populate(metrics, new FakeLedgerStats());
        // The pause meters are registered at the first GC notification, which comes on a JMX thread after the GC.
        final long deadline = System.nanoTime() + 10_000_000_000L;
        while (registry.find("jvm.gc.pause").timer() == null && System.nanoTime() - deadline < 0)
        {
            System.gc();
            Thread.sleep(50);
        }
        return registry.scrape();
    }

    @Test
    void everyLineParsesAndEveryFamilyHasHelpAndType() throws Exception
    {
        final String text = populatedScrape(dir);
        final Map<String, String> types = new HashMap<>();
        final Set<String> helped = new LinkedHashSet<>();
        final Set<String> sampled = new LinkedHashSet<>();
        for (final String line : text.split("\n"))
        {
            if (line.isEmpty() || line.equals("# EOF"))
            {
                continue;
            }
            Matcher m = HELP.matcher(line);
            if (m.matches())
            {
                assertThat(helped.add(m.group(1))).as("one HELP for %s", m.group(1)).isTrue();
                continue;
            }
            m = TYPE.matcher(line);
            if (m.matches())
            {
                assertThat(types.put(m.group(1), m.group(2))).as("one TYPE for %s", m.group(1)).isNull();
                continue;
            }
            m = SAMPLE.matcher(line);
            assertThat(m.matches()).as("a well-formed sample: %s", line).isTrue();
            sampled.add(m.group(1));
        }
        for (final String sample : sampled)
        {
            final String family = family(sample, types);
            assertThat(types).as("TYPE for sample %s", sample).containsKey(family);
            assertThat(helped).as("HELP for sample %s", sample).contains(family);
        }
        for (final Map.Entry<String, String> e : FAMILIES.entrySet())
        {
            assertThat(types).as("family %s", e.getKey()).containsEntry(e.getKey(), e.getValue());
        }
        assertThat(types.keySet().stream().filter(n -> n.startsWith("egressd_"))).containsExactlyInAnyOrderElementsOf(
            FAMILIES.keySet());
        assertThat(text).doesNotContain("_total_total").doesNotContain("process_cpu_time_ns")
            .doesNotContain("system_cpu_count");
        assertThat(text).contains("egressd_machines{app=\"a1\",scope=\"pending\"} 2.0")
            .contains("egressd_machines{app=\"a2\",scope=\"machine\"} 1.0")
            .contains("egressd_pair_capacity_slots{app=\"a1\",pair=\"203.0.113.11\"} 8.0")
            .contains("egressd_changes_total{operation=\"delete_machine\",outcome=\"unavailable\"} 1.0")
            .contains("egressd_changes_total{operation=\"release_pair\",outcome=\"refused\"} 1.0")
            .contains("egressd_change_latency_seconds_bucket{le=\"+Inf\"}")
            .contains("egressd_cap_refused_packets_total{family=\"ipv6\"} 4.0")
            .contains("process_files_open_files ", "process_files_max_files ", "jvm_gc_pause_seconds_count{",
                "jvm_gc_memory_allocated_bytes_total ", "process_start_time_seconds ", "process_uptime_seconds ")
            .contains("egressd_build_info{revision=\"" + Version.revision() + "\",version=\"" + Version.version()
                + "\"} 1\n");
    }

    @Test
    void aDeletedMachineLeavesTheScrape() throws Exception
    {
        f = new MetricsFixture(dir);
        registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        metrics = new EgressMetrics(f.loop);
        metrics.bindTo(registry);
        f.addPair("a1", 10);
        f.put(machine("m1", "a1", 2));
        f.put(machine("m2", "a1", 3));
        metrics.refresh();
        assertThat(registry.scrape()).contains("machine=\"m1\"").contains("machine=\"m2\"");
        f.delete("m1");
        metrics.refresh();
        assertThat(registry.scrape()).doesNotContain("machine=\"m1\"").contains("machine=\"m2\"");
        f.releasePair("a1", 10);
        f.delete("m2");
        metrics.refresh();
        assertThat(registry.scrape()).doesNotContain("machine=\"m2\"").doesNotContain("203.0.113.10");
    }

    private static String family(final String sample, final Map<String, String> types)
    {
        if (types.containsKey(sample))
        {
            return sample;
        }
        for (final String suffix : new String[] {"_bucket", "_count", "_sum"})
        {
            if (sample.endsWith(suffix))
            {
                return sample.substring(0, sample.length() - suffix.length());
            }
        }
        return sample;
    }
}
