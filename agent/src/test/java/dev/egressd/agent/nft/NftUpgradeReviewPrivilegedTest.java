package dev.egressd.agent.nft;

import dev.egressd.agent.lab.LabNamespace;
import dev.egressd.agent.natives.NetNamespace;
import dev.egressd.core.plan.KernelPlan;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanDiff;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import java.util.List;

import static dev.egressd.agent.nft.PlanFixtures.machines;
import static dev.egressd.agent.nft.PlanFixtures.withoutUplinks;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Review: a table written by an older egressd (per-guest chains of one rule with an anonymous protocol set) is
 * read by a fresh, paced dataplane (a restart onto the new version), and the diff's ADDs are accepted by the
 * kernel although the snat6 and mapped6 elements are already there.
 */
@Tag("privileged")
class NftUpgradeReviewPrivilegedTest
{
    private LabNamespace lab;
    private NetNamespace ns;
    private LibNftablesClient client;

    @BeforeEach
    void setUp() throws Exception
    {
        LabNamespace.requirePrivileged();
        lab = LabNamespace.withUplink();
        ns = NetNamespace.enter(lab.name());
        client = ns.call(LibNftablesClient::open);
    }

    @AfterEach
    void tearDown() throws Exception
    {
        LabNamespace.tearDown(lab, ns, client);
    }

    @Test
    void oneRuleChainsOfAnOlderEgressdAreRewrittenOnStart() throws Exception
    {
        final KernelPlan plan = withoutUplinks(machines(1, 2));
        final NftDataplane old = new NftDataplane(client, DataplaneConfig.defaults("uplink"));
        ns.call(old::ensureTable);
        ns.call(() ->
        {
            old.apply(PlanDiff.between(KernelPlan.empty(), plan));
            return null;
        });
        // Rewrite every per-guest chain into the old one-rule form.
        for (final PlanElement e : plan.elements())
        {
            if (e instanceof PlanElement.Snat6 s)
            {
                final String chain = Ruleset.snat6Chain(s.guest());
                lab.exec("nft", "flush chain inet egressd " + chain);
                lab.exec("nft", "add rule inet egressd " + chain + " meta l4proto { tcp, udp, ipv6-icmp } snat ip6 to ["
                    + s.egress() + "]:" + Ruleset.ports(s.firstPort(), s.lastPort()));
            }
        }

        final NftDataplane fresh = new NftDataplane(client, DataplaneConfig.defaults("uplink"));
        fresh.paceDeepChecks(4, System::nanoTime);
        ns.call(fresh::ensureTable);
        final KernelPlan read = ns.call(fresh::read);
        final List<PlanChange> changes = PlanDiff.between(read, plan);
        assertThat(changes).isNotEmpty().allMatch(c -> c.op() == PlanChange.Op.ADD);
        ns.call(() ->
        {
            fresh.apply(changes);
            return null;
        });
        assertThat(ns.call(fresh::readFull)).isEqualTo(plan);
        for (final PlanElement e : plan.elements())
        {
            if (e instanceof PlanElement.Snat6 s)
            {
                final String listed = lab.exec("nft", "list", "chain", "inet", "egressd", Ruleset.snat6Chain(s.guest()));
                assertThat(listed).doesNotContain("l4proto {").contains("meta l4proto tcp").contains("meta l4proto udp");
            }
        }
    }
}
