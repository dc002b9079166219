package dev.egressd.agent.state;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

class KernelSeenTest
{
    @TempDir
    Path dir;

    private static final KernelSeen SEEN = new KernelSeen("8fef809d-24e3-4007-8d06-5bb8bc4a93e7", 1_796_398_032_024L,
        "4:4026531840", 4711, "t".repeat(64), "p".repeat(64));

    @Test
    void aRecordIsWrittenWholeAndTakenOnce() throws Exception
    {
        SEEN.writeTo(dir);
        assertThat(dir.resolve(KernelSeen.FILE + ".tmp")).doesNotExist();
        assertThat(KernelSeen.take(dir)).isEqualTo(SEEN);
        assertThat(dir.resolve(KernelSeen.FILE)).as("good for one start").doesNotExist();
        assertThat(KernelSeen.take(dir)).isNull();
    }

    @Test
    void withoutABootIdTheBootTimeDecides() throws Exception
    {
        final KernelSeen noId = new KernelSeen(null, SEEN.bootMillis(), SEEN.netns(), SEEN.generation(), SEEN.table(),
            SEEN.plan());
        noId.writeTo(dir);
        assertThat(KernelSeen.take(dir)).isEqualTo(noId);
        assertThat(noId.mismatch(new KernelSeen(null, SEEN.bootMillis() + 40, SEEN.netns(), SEEN.generation(),
            SEEN.table(), SEEN.plan()))).as("the wall clock slewed a little").isNull();
        assertThat(noId.mismatch(new KernelSeen(null, SEEN.bootMillis() + 60_000, SEEN.netns(), SEEN.generation(),
            SEEN.table(), SEEN.plan()))).startsWith("another boot");
        assertThat(noId.mismatch(new KernelSeen(null, -1, SEEN.netns(), SEEN.generation(), SEEN.table(),
            SEEN.plan()))).startsWith("another boot");
    }

    @Test
    void everyDifferenceIsNamed()
    {
        assertThat(SEEN.mismatch(SEEN)).isNull();
        assertThat(SEEN.mismatch(new KernelSeen("another", SEEN.bootMillis(), SEEN.netns(), SEEN.generation(),
            SEEN.table(), SEEN.plan()))).startsWith("another boot (boot id another");
        assertThat(SEEN.mismatch(new KernelSeen(SEEN.bootId(), SEEN.bootMillis(), "4:4026532000", SEEN.generation(),
            SEEN.table(), SEEN.plan()))).startsWith("another network namespace");
        assertThat(SEEN.mismatch(new KernelSeen(SEEN.bootId(), SEEN.bootMillis(), SEEN.netns(), 4712, SEEN.table(),
            SEEN.plan()))).isEqualTo("the ruleset's generation moved (4712, was 4711)");
        assertThat(SEEN.mismatch(new KernelSeen(SEEN.bootId(), SEEN.bootMillis(), SEEN.netns(), SEEN.generation(),
            "x", SEEN.plan()))).contains("fixed part");
        assertThat(SEEN.mismatch(new KernelSeen(SEEN.bootId(), SEEN.bootMillis(), SEEN.netns(), SEEN.generation(),
            SEEN.table(), "y"))).contains("state differs");
        final KernelSeen unknown = new KernelSeen(SEEN.bootId(), SEEN.bootMillis(), SEEN.netns(), -1, SEEN.table(),
            SEEN.plan());
        assertThat(unknown.mismatch(unknown)).as("an unknown generation vouches for nothing").isNotNull();
    }

    @Test
    void aTornOrForeignRecordIsNotUsed() throws Exception
    {
        SEEN.writeTo(dir);
        final String whole = Files.readString(dir.resolve(KernelSeen.FILE));
        Files.writeString(dir.resolve(KernelSeen.FILE), whole.substring(0, whole.indexOf("generation=")));
        assertThat(KernelSeen.take(dir)).isNull();
        Files.writeString(dir.resolve(KernelSeen.FILE), whole.replace("format=1", "format=2"));
        assertThat(KernelSeen.take(dir)).isNull();
        Files.writeString(dir.resolve(KernelSeen.FILE), whole.replace("generation=4711", "generation=x"));
        assertThat(KernelSeen.take(dir)).isNull();
        assertThat(dir.resolve(KernelSeen.FILE)).doesNotExist();
    }
}
