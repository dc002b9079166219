package dev.egressd.agent.kernel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.agent.testing.LabNamespace;
import dev.egressd.agent.testing.Privileged;
import dev.egressd.agent.testing.Requirements;
import java.io.IOException;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Sysctl against the real /proc/sys from a thread inside a fresh network namespace: the net.* keys are per
 * namespace, so what is written there is seen by {@code sysctl} run in that namespace and not in the root one.
 */
@Privileged
class SysctlPrivilegedTest
{
    private LabNamespace lab;
    private NetNamespace ns;

    @BeforeEach
    void createNamespace() throws IOException
    {
        Requirements.root();
        lab = LabNamespace.create();
        ns = NetNamespace.enter(lab.name());
    }

    @AfterEach
    void deleteNamespace() throws IOException
    {
        LabNamespace.tearDown(lab, ns);
    }

    @Test
    void writesAndReadsTheNamespacesOwnValues() throws IOException
    {
        final String rootBefore = Sysctl.read("net.ipv4.conf.all.arp_announce");
        final List<String> read = ns.call(() ->
        {
            Sysctl.write("net.ipv4.conf.all.arp_announce", "2");
            Sysctl.write("net.ipv4.conf.all.arp_ignore", "1");
            Sysctl.write("net.ipv4.fwmark_reflect", "1");
            Sysctl.write("net/ipv4/conf/lo/rp_filter", "1");
            return List.of(Sysctl.read("net.ipv4.conf.all.arp_announce"), Sysctl.read("net.ipv4.conf.all.arp_ignore"),
                Sysctl.read("net.ipv4.fwmark_reflect"), Sysctl.read("net.ipv4.conf.lo.rp_filter"));
        });
        assertThat(read).containsExactly("2", "1", "1", "1");
        assertThat(lab.exec("sysctl", "-n", "net.ipv4.conf.all.arp_announce").strip()).isEqualTo("2");
        assertThat(lab.exec("sysctl", "-n", "net.ipv4.fwmark_reflect").strip()).isEqualTo("1");
        assertThat(Sysctl.read("net.ipv4.conf.all.arp_announce")).as("the root namespace is untouched").isEqualTo(rootBefore);
    }

    @Test
    void aValueTheKernelRefusesIsAnErrorNamingKeyAndValue() throws IOException
    {
        final String before = lab.exec("sysctl", "-n", "net.ipv4.conf.all.arp_ignore").strip();
        assertThatThrownBy(() -> ns.call(() ->
        {
            Sysctl.write("net.ipv4.conf.all.arp_ignore", "banana");
            return null;
        })).isInstanceOf(IOException.class).hasMessageStartingWith("sysctl net.ipv4.conf.all.arp_ignore = banana: refused");
        assertThatThrownBy(() -> ns.call(() -> Sysctl.read("net.ipv4.conf.nosuch0.rp_filter")))
            .isInstanceOf(IOException.class).hasMessageStartingWith("sysctl net.ipv4.conf.nosuch0.rp_filter: no such key");
        assertThat(lab.exec("sysctl", "-n", "net.ipv4.conf.all.arp_ignore").strip()).as("unchanged").isEqualTo(before);
    }
}
