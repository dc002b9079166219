package dev.egressd.agent.kernel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.egressd.agent.kernel.rtnetlink.InterfaceAddress;
import dev.egressd.agent.netlink.NetlinkConstants;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/** The start-up checks' parsers, on given text rather than on this machine. */
class KernelChecksTest
{
    /** /proc/self/status of a root shell (abridged): CapEff has every capability up to 40. */
    private static final String ROOT = "Name:\tjava\nUmask:\t0022\nState:\tR (running)\nUid:\t0\t0\t0\t0\n"
        + "CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n"
        + "CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n";

    @Test
    void capEffIsReadAsHex()
    {
        assertThat(KernelChecks.effectiveCapabilities(ROOT)).isEqualTo(0x1ffffffffffL);
        assertThat(KernelChecks.effectiveCapabilities("CapEff:\t0000000000001000\n")).isEqualTo(1L << 12);
        // all 64 bits set must not overflow the parse
        assertThat(KernelChecks.effectiveCapabilities("CapEff:\tffffffffffffffff")).isEqualTo(-1L);
    }

    @Test
    void rootHasNetAdmin()
    {
        assertThat(KernelChecks.capabilityProblem(ROOT)).isEmpty();
    }

    @Test
    void onlyBit12IsEnough()
    {
        // a systemd service with AmbientCapabilities=CAP_NET_ADMIN and nothing else
        assertThat(KernelChecks.capabilityProblem("Uid:\t998\t998\t998\t998\nCapEff:\t0000000000001000\n")).isEmpty();
    }

    @Test
    void withoutBit12TheProblemSaysWhatToDo()
    {
        // every capability except CAP_NET_ADMIN, as root in a container that dropped it
        final String status = ROOT.replace("CapEff:\t000001ffffffffff", "CapEff:\t000001ffffffefff");
        assertThat(KernelChecks.capabilityProblem(status)).contains(
            "egressd needs CAP_NET_ADMIN: run as root or with AmbientCapabilities=CAP_NET_ADMIN");
        assertThat(KernelChecks.capabilityProblem("CapEff:\t0000000000000000\n")).contains(KernelChecks.NO_NET_ADMIN);
    }

    @Test
    void aMissingOrMalformedCapEffLineIsAProblemNotACrash()
    {
        assertThatThrownBy(() -> KernelChecks.effectiveCapabilities("Name:\tjava\nCapPrm:\t0\n"))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("no CapEff line");
        assertThat(KernelChecks.capabilityProblem("CapEff:\tzz\n")).hasValueSatisfying(p ->
            assertThat(p).startsWith("cannot tell whether egressd has CAP_NET_ADMIN: malformed CapEff line"));
        // a line that merely mentions CapEff later is not the field
        assertThat(KernelChecks.capabilityProblem("Name:\tCapEff:\nCapPrm:\t0\n")).isPresent();
    }

    @Test
    void kernelsFrom61OnPass()
    {
        assertThat(KernelChecks.kernelProblem("6.18.44-fc-v857\n")).isEmpty();
        assertThat(KernelChecks.kernelProblem("6.1.0-18-amd64")).isEmpty();
        assertThat(KernelChecks.kernelProblem("7.0.0")).isEmpty();
        assertThat(KernelChecks.kernelProblem("something odd")).as("unparseable: not judged").isEmpty();
    }

    @Test
    void olderKernelsAreRefusedWithTheReason()
    {
        final Optional<String> problem = KernelChecks.kernelProblem("5.15.0-91-generic");
        assertThat(problem).contains("kernel 5.15.0-91-generic is too old: egressd needs Linux 6.1 or later "
            + "(IFA_PROTO marks the uplink addresses it owns)");
        assertThat(KernelChecks.kernelProblem("6.0.12")).isPresent();
    }

    private static InterfaceAddress v6(final String address, final int prefix, final long preferred, final int proto)
    {
        return new InterfaceAddress(null, Ipv6Address.parse(address), prefix, 0, preferred, InterfaceAddress.FOREVER,
            proto);
    }

    @Test
    void ipv6MasqueradeNeedsAPreferredAddressOfTheHostsOwn()
    {
        final InterfaceAddress linkLocal = v6("fe80::1", 64, InterfaceAddress.FOREVER, 0);
        final InterfaceAddress egress = v6("2001:db8:10::10", 128, 0, NetlinkConstants.IFAPROT_EGRESSD);
        final InterfaceAddress hostOwn = v6("2001:db8:1::1", 64, InterfaceAddress.FOREVER, 0);
        final InterfaceAddress hostDeprecated = v6("2001:db8:1::2", 64, 0, 0);
        final InterfaceAddress ipv4 = new InterfaceAddress(Ipv4Address.parse("192.0.2.1"), null, 24, 0,
            InterfaceAddress.FOREVER, InterfaceAddress.FOREVER, 0);

        assertThat(KernelChecks.ipv6SourceWarning("uplink", List.of(ipv4, linkLocal, egress, hostOwn))).isEmpty();
        assertThat(KernelChecks.ipv6SourceWarning("uplink", List.of(ipv4, linkLocal, egress, hostDeprecated)))
            .hasValueSatisfying(w -> assertThat(w).startsWith("uplink uplink has no preferred IPv6 address")
                .contains("egress /128"));
        assertThat(KernelChecks.ipv6SourceWarning("uplink", List.of(ipv4, egress))).isPresent();
        assertThat(KernelChecks.ipv6SourceWarning("uplink", List.of(ipv4))).as("no egress /128: nothing to leak")
            .isEmpty();
    }
}
