package dev.egressd.agent.kernel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Sysctl's key-to-file mapping, reading and writing, against a stand-in for /proc/sys in a temporary directory. */
class SysctlTest
{
    @TempDir
    Path root;

    @Test
    void aDottedKeyIsAPathAndASlashedKeyIsTakenAsItIs()
    {
        assertThat(Sysctl.file(root, "net.ipv4.conf.all.arp_ignore")).isEqualTo(root.resolve("net/ipv4/conf/all/arp_ignore"));
        // an interface name holding a dot can only be named with slashes, as sysctl(8) allows
        assertThat(Sysctl.file(root, "net/ipv4/conf/eth0.100/rp_filter"))
            .isEqualTo(root.resolve("net/ipv4/conf/eth0.100/rp_filter"));
    }

    @Test
    void keysThatAreNoSysctlNamesAreRefused()
    {
        for (final String bad : new String[] {"", "net..ipv4", "net/../../etc/passwd", "/proc/sys/net", ".net", "net.",
            "net.ipv4 .x", "net/ipv4/"})
        {
            assertThatThrownBy(() -> Sysctl.file(root, bad)).as(bad).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("not a sysctl key");
        }
        assertThatThrownBy(() -> Sysctl.file(root, null)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void readReturnsTheValueWithoutTheNewline() throws IOException
    {
        put("net/ipv4/conf/all/arp_ignore", "1\n");
        put("net/ipv4/ip_local_port_range", "32768\t60999\n");
        assertThat(Sysctl.read(root, "net.ipv4.conf.all.arp_ignore")).isEqualTo("1");
        assertThat(Sysctl.read(root, "net.ipv4.ip_local_port_range")).isEqualTo("32768\t60999");
    }

    @Test
    void writeWritesOneLine() throws IOException
    {
        put("net/ipv4/conf/all/arp_announce", "0\n");
        Sysctl.write(root, "net.ipv4.conf.all.arp_announce", "2");
        assertThat(Files.readString(root.resolve("net/ipv4/conf/all/arp_announce"))).isEqualTo("2\n");
    }

    @Test
    void aMissingKeyIsAnErrorNamingIt()
    {
        assertThatThrownBy(() -> Sysctl.read(root, "net.ipv4.fwmark_reflect")).isInstanceOf(IOException.class)
            .hasMessageStartingWith("sysctl net.ipv4.fwmark_reflect: no such key");
        // write never creates a file: a key that does not exist is an error, not a new file
        assertThatThrownBy(() -> Sysctl.write(root, "net.ipv4.fwmark_reflect", "1")).isInstanceOf(IOException.class)
            .hasMessageStartingWith("sysctl net.ipv4.fwmark_reflect: no such key");
        assertThat(root.resolve("net/ipv4/fwmark_reflect")).doesNotExist();
    }

    @Test
    void aValueMustBeOneNonEmptyLineAndNothingIsWrittenOtherwise() throws IOException
    {
        put("net/ipv4/conf/all/rp_filter", "0\n");
        for (final String bad : new String[] {"", " ", "1\n2", "1\r"})
        {
            assertThatThrownBy(() -> Sysctl.write(root, "net.ipv4.conf.all.rp_filter", bad))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("net.ipv4.conf.all.rp_filter");
        }
        assertThat(Files.readString(root.resolve("net/ipv4/conf/all/rp_filter"))).isEqualTo("0\n");
    }

    private void put(final String relative, final String content) throws IOException
    {
        final Path file = root.resolve(relative);
        Files.createDirectories(file.getParent());
        Files.writeString(file, content, StandardCharsets.US_ASCII);
    }
}
