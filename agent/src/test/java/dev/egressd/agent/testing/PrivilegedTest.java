package dev.egressd.agent.testing;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.opentest4j.AssertionFailedError;
import org.opentest4j.TestAbortedException;

/** The {@link Privileged} tag can be relied on: every test that needs privileges carries it, and CI never skips one. */
class PrivilegedTest
{
    /** What a test calls when it needs root, namespaces, libnftables, a host tool or its own etcd. */
    private static final Pattern NEEDS_PRIVILEGES = Pattern.compile(
        "\\bRequirements\\.\\w+\\(|\\b(Region)?Lab\\.create\\(|\\bLabNamespace\\.\\w+\\(|\\bextends DaemonLabTest\\b"
            + "|\\bEtcdServer\\.create\\(");
    /** The annotation on the class or on a test method. */
    private static final Pattern TAGGED = Pattern.compile("^\\s*@Privileged$", Pattern.MULTILINE);

    @Test
    void underRequirePrivilegedASkipIsAFailure()
    {
        final TestAbortedException skip = new TestAbortedException("not root");
        final Throwable failure = PrivilegedExtension.failIfRequired(skip, true);
        assertThat(failure).isInstanceOf(AssertionFailedError.class).hasCause(skip)
            .hasMessageContaining("not root").hasMessageContaining("EGRESSD_REQUIRE_PRIVILEGED=1");
    }

    @Test
    void withoutItASkipStaysASkipAndFailuresStayAsTheyAre()
    {
        final TestAbortedException skip = new TestAbortedException("not root");
        assertThat(PrivilegedExtension.failIfRequired(skip, false)).isSameAs(skip);
        final AssertionError failed = new AssertionError("wrong");
        assertThat(PrivilegedExtension.failIfRequired(failed, true)).isSameAs(failed);
        assertThat(PrivilegedExtension.failIfRequired(failed, false)).isSameAs(failed);
    }

    @Test
    void theAnnotationCarriesTheTag()
    {
        assertThat(Privileged.class.getAnnotation(Tag.class).value()).isEqualTo("privileged");
    }

    @Test
    void everyTestThatNeedsPrivilegesIsTagged() throws IOException
    {
        final Path root = Path.of("src", "test", "java");
        assertThat(root).isDirectory();
        final List<String> untagged = new ArrayList<>();
        final List<String> tagged = new ArrayList<>();
        try (Stream<Path> files = Files.walk(root))
        {
            final List<Path> tests = files
                .filter(f -> f.toString().endsWith("Test.java") || f.toString().endsWith("IT.java")).toList();
            for (final Path file : tests)
            {
                final String source = Files.readString(file);
                if (source.contains("abstract class") || file.startsWith(root.resolve("dev/egressd/agent/testing")))
                {
                    continue;
                }
                if (NEEDS_PRIVILEGES.matcher(source).find())
                {
                    (TAGGED.matcher(source).find() ? tagged : untagged).add(file.getFileName().toString());
                }
            }
        }
        assertThat(untagged).as("tests that need privileges without @Privileged").isEmpty();
        assertThat(tagged).as("the privileged tests found").contains("DaemonIT.java", "ObservabilityIT.java",
            "DataplaneE2ETest.java", "LabE2ETest.java", "ConntrackMonitorPrivilegedTest.java",
            "NftKernelPrivilegedTest.java", "NftDataplanePrivilegedTest.java",
            "RtnetlinkAddressesPrivilegedTest.java", "ConntrackEventsPrivilegedTest.java", "PromtoolCheckTest.java",
            "SystemdUnitTest.java", "DaemonMetricsTest.java", "EtcdRegionStoreTest.java");
    }
}
