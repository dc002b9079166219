package dev.egressd.agent.kernel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class LoopbackArpTest
{
    /** Sysctls in a map; a key may refuse writes. */
    private static final class FakeSysctls implements LoopbackArp.Sysctls
    {
        final Map<String, String> values = new HashMap<>();
        final List<String> writes = new ArrayList<>();
        String readOnly;

        FakeSysctls(final String ignore, final String announce)
        {
            values.put(LoopbackArp.ARP_IGNORE, ignore);
            values.put(LoopbackArp.ARP_ANNOUNCE, announce);
        }

        @Override
        public String read(final String key) throws IOException
        {
            final String v = values.get(key);
            if (v == null)
            {
                throw new IOException("sysctl " + key + ": no such key");
            }
            return v;
        }

        @Override
        public void write(final String key, final String value) throws IOException
        {
            if (key.equals(readOnly))
            {
                throw new IOException("sysctl " + key + " = " + value + ": refused: Read-only file system");
            }
            writes.add(key + "=" + value);
            values.put(key, value);
        }
    }

    @Test
    void lowValuesAreRaisedAndEachChangeNamesKeyOldAndNew() throws KernelException
    {
        final FakeSysctls sysctls = new FakeSysctls("0\n", "1");
        assertThat(LoopbackArp.problem(sysctls)).hasValueSatisfying(p -> assertThat(p)
            .startsWith("net.ipv4.conf.all.arp_ignore is 0, needs 1; net.ipv4.conf.all.arp_announce is 1, needs 2"));
        assertThat(LoopbackArp.ensure(sysctls)).containsExactly("net.ipv4.conf.all.arp_ignore 0 -> 1",
            "net.ipv4.conf.all.arp_announce 1 -> 2");
        assertThat(sysctls.values).containsEntry(LoopbackArp.ARP_IGNORE, "1").containsEntry(LoopbackArp.ARP_ANNOUNCE, "2");
        assertThat(LoopbackArp.problem(sysctls)).isEmpty();
        assertThat(LoopbackArp.ensure(sysctls)).as("nothing left to change").isEmpty();
    }

    @Test
    void stricterValuesAreLeftAndOnesThatAnswerForLoAddressesAreRaised() throws KernelException
    {
        for (final String strict : List.of("1", "2", "8"))
        {
            final FakeSysctls sysctls = new FakeSysctls(strict, "2");
            assertThat(LoopbackArp.ensure(sysctls)).as("arp_ignore %s", strict).isEmpty();
            assertThat(sysctls.writes).isEmpty();
        }
        // 3 answers for a global address on any interface, 4..7 answer everything: not "higher is stricter"
        final FakeSysctls three = new FakeSysctls("3", "2");
        assertThat(LoopbackArp.problem(three)).hasValueSatisfying(p -> assertThat(p).contains("arp_ignore is 3"));
        assertThat(LoopbackArp.ensure(three)).containsExactly("net.ipv4.conf.all.arp_ignore 3 -> 1");
    }

    @Test
    void anUplinkThatAnswersForLoAddressesItselfIsReportedNamingIt()
    {
        final FakeSysctls sysctls = new FakeSysctls("1", "2");
        sysctls.values.put("net/ipv4/conf/eth0.100/arp_ignore", "0");
        assertThat(LoopbackArp.problem(sysctls, "eth0.100")).as("max(1, 0) = 1").isEmpty();
        sysctls.values.put("net/ipv4/conf/eth0.100/arp_ignore", "3");
        assertThat(LoopbackArp.problem(sysctls, "eth0.100")).hasValueSatisfying(p -> assertThat(p)
            .startsWith("net/ipv4/conf/eth0.100/arp_ignore is 3 (the higher of it and all's counts), needs 0, 1 or 2"));
        assertThat(LoopbackArp.problem(sysctls)).as("all alone is right").isEmpty();
        sysctls.values.put("net/ipv4/conf/eth0.100/arp_ignore", "2");
        assertThat(LoopbackArp.problem(sysctls, "eth0.100")).isEmpty();
    }

    @Test
    void aWriteRefusedOrAValueUnreadableIsAnErrorNamingTheKey()
    {
        final FakeSysctls frozen = new FakeSysctls("0", "0");
        frozen.readOnly = LoopbackArp.ARP_ANNOUNCE;
        assertThatThrownBy(() -> LoopbackArp.ensure(frozen)).isInstanceOf(KernelException.class)
            .hasMessageStartingWith("sysctl net.ipv4.conf.all.arp_announce = 2: refused: Read-only file system")
            .hasMessageContaining("/etc/sysctl.d/");

        final FakeSysctls garbled = new FakeSysctls("zero", "2");
        assertThatThrownBy(() -> LoopbackArp.ensure(garbled)).isInstanceOf(KernelException.class)
            .hasMessage("sysctl net.ipv4.conf.all.arp_ignore: not a number: zero");
        assertThat(garbled.writes).isEmpty();

        final FakeSysctls hidden = new FakeSysctls("1", "2");
        hidden.values.clear();
        assertThat(LoopbackArp.problem(hidden)).hasValue(LoopbackArp.UNREADABLE
            + "sysctl net.ipv4.conf.all.arp_ignore: no such key");
    }
}
