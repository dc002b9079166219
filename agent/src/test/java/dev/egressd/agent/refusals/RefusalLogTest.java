package dev.egressd.agent.refusals;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import org.junit.jupiter.api.Test;

class RefusalLogTest
{
    private final AtomicLong clock = new AtomicLong(5_000_000_000L);
    private final List<String> lines = new ArrayList<>();

    @Test
    void aStormOfOneReasonIsCutToTheBurstAndSummarisedWhileOtherReasonsStillPass()
    {
        final RefusalLog log = new RefusalLog(RefusalLog.Format.TEXT, lines::add, clock::get);
        for (int i = 0; i < 1000; i++)
        {
            log.limit("block_violation", "m1", "a1", "tcp 10.0.0.2:" + i + " -> 198.51.100.10:80", "outside");
        }
        assertThat(lines).hasSize(RefusalLog.BURST);
        assertThat(log.refusal("pending", "m2", "a1", null, 1, "every pair is full")).isTrue();
        assertThat(lines).hasSize(RefusalLog.BURST + 1);
        clock.addAndGet(1_000_000_000L);                      // one second: PER_SECOND tokens back
        log.flush();
        assertThat(lines.get(lines.size() - 1)).isEqualTo("suppressed reason=block_violation lines=990 count=990 "
            + "detail=\"suppressed 990 similar limit lines carrying a count of 990 (reason block_violation, rate "
            + "limit 10 then 2/s)\"");
        assertThat(log.suppressed()).isEqualTo(990);
        log.flush();
        assertThat(lines).hasSize(RefusalLog.BURST + 2);
    }

    @Test
    void theSummaryOfHeldBackCounterLinesCarriesTheirLinesAndTheirSummedCount() throws Exception
    {
        for (final RefusalLog.Format format : RefusalLog.Format.values())
        {
            lines.clear();
            final RefusalLog log = new RefusalLog(format, lines::add, clock::get);
            for (int i = 0; i < RefusalLog.BURST; i++)
            {
                log.refusal("cap_refused", null, null, null, 1, "one");
            }
            // held back: three kernel counter lines standing for 4,000 packets in all
            assertThat(log.refusal("cap_refused", null, null, null, 1000, "1000 reset")).isFalse();
            assertThat(log.refusal("cap_refused", null, null, null, 2500, "2500 reset")).isFalse();
            assertThat(log.refusal("cap_refused", null, null, null, 500, "500 reset")).isFalse();
            clock.addAndGet(1_000_000_000L);
            log.flush();
            final String summary = lines.get(lines.size() - 1);
            if (format == RefusalLog.Format.TEXT)
            {
                assertThat(summary).isEqualTo("suppressed reason=cap_refused lines=3 count=4000 detail=\"suppressed 3 "
                    + "similar refusal lines carrying a count of 4000 (reason cap_refused, rate limit 10 then 2/s)\"");
            }
            else
            {
                final JsonNode json = new ObjectMapper().readTree(summary);
                assertThat(json.get("kind").asText()).isEqualTo("suppressed");
                assertThat(json.get("lines").asLong()).isEqualTo(3);
                assertThat(json.get("count").asLong()).isEqualTo(4000);
            }
            assertThat(log.suppressed()).isEqualTo(3);
            // the next storm, once the bucket is full again, starts from zero
            clock.addAndGet(10_000_000_000L);
            for (int i = 0; i < RefusalLog.BURST; i++)
            {
                log.refusal("cap_refused", null, null, null, 1, "one");
            }
            log.refusal("cap_refused", null, null, null, 7, "7 reset");
            clock.addAndGet(1_000_000_000L);
            log.flush();
            assertThat(lines.get(lines.size() - 1)).contains(format == RefusalLog.Format.TEXT ? "lines=1 count=7"
                : "\"lines\":1,\"count\":7");
        }
    }

    @Test
    void jsonLinesCarryEveryField() throws Exception
    {
        final RefusalLog log = new RefusalLog(RefusalLog.Format.JSON, lines::add, clock::get);
        log.refusal("cap_refused", null, null, null, 3, "3 IPv4 new connections reset \"over\" the cap");
        final JsonNode json = new ObjectMapper().readTree(lines.get(0));
        assertThat(json.get("kind").asText()).isEqualTo("refusal");
        assertThat(json.get("reason").asText()).isEqualTo("cap_refused");
        assertThat(json.get("machine").isNull()).isTrue();
        assertThat(json.get("count").asLong()).isEqualTo(3);
        assertThat(json.has("lines")).as("only a summary has lines").isFalse();
        assertThat(json.get("detail").asText()).contains("\"over\"");
        assertThat(lines.get(0)).doesNotContain("\n");
    }

    @Test
    void kernelCountersThatMovedBecomeOneLineEachWithTheDelta()
    {
        final RefusalLog log = new RefusalLog(RefusalLog.Format.TEXT, lines::add, clock::get);
        final KernelCounterWatch watch = new KernelCounterWatch(log);
        assertThat(watch.observe(Map.of("cap4", 5L, "spoof4", 1L, "unmapped6", 0L))).isZero();
        assertThat(watch.observe(Map.of("cap4", 8L, "spoof4", 1L, "unmapped6", 2L))).isEqualTo(2);
        assertThat(lines).hasSize(2).anySatisfy(l -> assertThat(l).startsWith("refusal reason=cap_refused count=3"))
            .anySatisfy(l -> assertThat(l).startsWith("refusal reason=fail_closed_refused count=2"));
    }
}
