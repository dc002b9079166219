package dev.egressd.agent.kernel.nft;

import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatIllegalArgumentException;

/** Golden strings: the exact nft text each change becomes. */
class PlanRendererTest
{
    private static final Ipv4Address G4 = Ipv4Address.parse("10.77.0.2");
    private static final Ipv6Address G6 = Ipv6Address.parse("fd77::2");
    private static final Ipv4Address E4 = Ipv4Address.parse("203.0.113.10");
    private static final Ipv6Address E6 = Ipv6Address.parse("2001:db8:10::10");

    private final PlanRenderer renderer = new PlanRenderer(DataplaneConfig.defaults("uplink"));

    @Test
    void setsAndSnat4Adds()
    {
        assertThat(renderer.render(List.of(
            PlanChange.add(new PlanElement.Uplink4(E4)),
            PlanChange.add(new PlanElement.Uplink6(E6)),
            PlanChange.add(new PlanElement.Static4(G4)),
            PlanChange.add(new PlanElement.Static6(G6)),
            PlanChange.add(new PlanElement.Guest4("tap-m1", G4)),
            PlanChange.add(new PlanElement.Guest6("tap-m1", G6)),
            PlanChange.add(new PlanElement.Snat4(G4, E4, 1024, 2047)))))
            .isEqualTo("""
                add element inet egressd static4 { 10.77.0.2 }
                add element inet egressd static6 { fd77::2 }
                add element inet egressd guests4 { "tap-m1" . 10.77.0.2 }
                add element inet egressd guests6 { "tap-m1" . fd77::2 }
                add element inet egressd snat4 { 10.77.0.2 : 203.0.113.10 . 1024-2047 }
                """);
    }

    @Test
    void snat4ReplaceIsDeleteThenAddOfTheKey()
    {
        assertThat(renderer.render(List.of(PlanChange.replace(new PlanElement.Snat4(G4, E4, 1024, 2047),
            new PlanElement.Snat4(G4, Ipv4Address.parse("203.0.113.11"), 1, 65535)))))
            .isEqualTo("""
                delete element inet egressd snat4 { 10.77.0.2 }
                add element inet egressd snat4 { 10.77.0.2 : 203.0.113.11 . 1-65535 }
                """);
    }

    @Test
    void removalsDeleteTheKeyOnly()
    {
        assertThat(renderer.render(List.of(
            PlanChange.remove(new PlanElement.Snat4(G4, E4, 1024, 2047)),
            PlanChange.remove(new PlanElement.Guest4("tap-m1", G4)),
            PlanChange.remove(new PlanElement.Static6(G6)),
            PlanChange.remove(new PlanElement.Uplink4(E4)))))
            .isEqualTo("""
                delete element inet egressd snat4 { 10.77.0.2 }
                delete element inet egressd guests4 { "tap-m1" . 10.77.0.2 }
                delete element inet egressd static6 { fd77::2 }
                """);
    }

    @Test
    void snat6IsAnElementOfItsDataMapLikeSnat4()
    {
        assertThat(renderer.render(List.of(PlanChange.add(new PlanElement.Snat6(G6, E6, 1024, 2047)))))
            .isEqualTo("add element inet egressd snat6 { fd77::2 : 2001:db8:10::10 . 1024-2047 }\n");
        assertThat(renderer.render(List.of(PlanChange.replace(new PlanElement.Snat6(G6, E6, 1024, 2047),
            new PlanElement.Snat6(G6, E6, 4096, 5119)))))
            .isEqualTo("delete element inet egressd snat6 { fd77::2 }\n"
                + "add element inet egressd snat6 { fd77::2 : 2001:db8:10::10 . 4096-5119 }\n");
        assertThat(renderer.render(List.of(PlanChange.remove(new PlanElement.Snat6(G6, E6, 1024, 2047)))))
            .isEqualTo("delete element inet egressd snat6 { fd77::2 }\n");
    }

    @Test
    void onlyUplinkChangesRenderNothing()
    {
        assertThat(renderer.render(List.of(PlanChange.add(new PlanElement.Uplink4(E4))))).isEmpty();
        assertThat(renderer.renderEach(List.of(PlanChange.remove(new PlanElement.Uplink6(E6))))).isEmpty();
    }

    @Test
    void aSingleSourcePortIsNotARange()
    {
        assertThat(renderer.render(List.of(PlanChange.add(new PlanElement.Snat4(G4, E4, 1024, 1024)))))
            .isEqualTo("add element inet egressd snat4 { 10.77.0.2 : 203.0.113.10 . 1024 }\n");
    }

    @Test
    void anInterfaceNameThatCouldBreakOutOfQuotesIsRefused()
    {
        assertThatIllegalArgumentException().isThrownBy(() -> renderer.render(List.of(
            PlanChange.add(new PlanElement.Guest4("tap\" }; flush", G4))))).withMessageStartingWith("iface:");
    }

    @Test
    void aReversedPortRangeIsRefused()
    {
        assertThatIllegalArgumentException().isThrownBy(() -> renderer.render(List.of(
            PlanChange.add(new PlanElement.Snat4(G4, E4, 2047, 1024))))).withMessageStartingWith("ports:");
        assertThatIllegalArgumentException().isThrownBy(() -> renderer.render(List.of(
            PlanChange.add(new PlanElement.Snat6(G6, E6, 1, 65536))))).withMessageStartingWith("ports:");
    }

    @Test
    void theTableNameComesFromTheConfig()
    {
        final PlanRenderer other = new PlanRenderer(new DataplaneConfig("lab", "uplink", "veth*", 3));
        assertThat(other.render(List.of(PlanChange.add(new PlanElement.Static4(G4)))))
            .isEqualTo("add element inet lab static4 { 10.77.0.2 }\n");
    }
}
