package dev.egressd.agent.state;

import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.alloc.Outcome;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Scope;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A restore that loses pairs (a state file whose pair an egressd of today refuses, such as an IPv6 link-local
 * address older versions took) must leave a fail-closed app's machines refused, not masqueraded (docs/design.md,
 * invariant 3), across any number of restarts, until a pair is added.
 */
class StateMapperRestoreTest
{
    private static final HostSettings SETTINGS = new HostSettings("ord", new BlockLayout(64, 1024), 1024);
    private static final DesiredState.Host HOST = StateMapper.host(SETTINGS);
    /** Refused on restore: fe80::/10 cannot be an egress address. */
    private static final DesiredState.Pair LOST = new DesiredState.Pair("203.0.113.10", "fe80::10", false);

    @TempDir
    Path dir;

    private final Clock clock = Clock.fixed(Instant.parse("2026-01-02T03:04:05.678Z"), ZoneOffset.UTC);

    private static DesiredState lostAppPairs(final boolean failClosed)
    {
        return new DesiredState(DesiredState.VERSION, HOST,
            List.of(new DesiredState.App("a1", failClosed, List.of(LOST), List.of("m2"))),
            List.of(new DesiredState.MachineEntry("m1", "a1", "tap-m1", "10.77.0.2", "fd77::2", null,
                    new DesiredState.Slot("203.0.113.10", 1), null),
                new DesiredState.MachineEntry("m2", "a1", "tap-m2", "10.77.0.3", "fd77::3", null, null, null)),
            List.of());
    }

    private static Scope scope(final EgressAllocator allocator, final String id)
    {
        return allocator.egress(id).orElseThrow().scope();
    }

    /** The guests the plan sends through SNAT (snat4 keys) and the guests it marks static (static4). */
    private static Set<String> kinds(final EgressAllocator allocator, final String guest)
    {
        return StateMapper.plan(allocator, List.of()).elements().stream()
            .filter(e -> e instanceof PlanElement.Static4 s && s.guest().toString().equals(guest)
                || e instanceof PlanElement.Snat4 n && n.guest().toString().equals(guest))
            .map(PlanElement::kind).collect(Collectors.toSet());
    }

    @Test
    void aFailClosedAppWhosePairsAllFailToRestoreKeepsItsMachinesRefusedAcrossRestartsUntilAPairIsAdded()
        throws Exception
    {
        final StateMapper.Rebuilt rebuilt = StateMapper.rebuild(SETTINGS, lostAppPairs(true), 1);
        final EgressAllocator allocator = rebuilt.allocator();
        assertThat(rebuilt.problems()).anyMatch(p -> p.startsWith("pair 203.0.113.10 of app a1: INVALID (ipv6)"));
        assertThat(allocator.pairs()).isEmpty();
        for (final String id : List.of("m1", "m2"))
        {
            assertThat(scope(allocator, id)).as(id).isEqualTo(Scope.PENDING);
            assertThat(allocator.egress(id).orElseThrow().reason()).as(id).isEqualTo("the egress pairs of app a1 could "
                + "not be restored from the state file: pending (fail-closed), its traffic is refused until a pair is "
                + "added");
        }
        // Static but unmapped: the kernel refuses the guest (counted as unmapped4) instead of masquerading it.
        assertThat(kinds(allocator, "10.77.0.2")).containsExactly("static4");
        assertThat(kinds(allocator, "10.77.0.3")).containsExactly("static4");

        // The flag is in the snapshot and in the journal, and survives a restart with no pair at all.
        final DesiredState exported = StateMapper.export(allocator, List.of());
        assertThat(exported.apps().get(0).lostPairs()).isTrue();
        assertThat(exported.apps().get(0).pairs()).isEmpty();
        final StateStore store = new StateStore(dir, clock);
        store.write(DesiredState.empty(HOST));
        store.write(exported);
        assertThat(Files.readString(store.journal(), java.nio.charset.StandardCharsets.ISO_8859_1))
            .contains("\"pairs_lost\":true");
        final DesiredState fromJournal = new StateStore(dir, clock).load().state();
        assertThat(fromJournal).isEqualTo(exported);
        store.snapshot(exported);
        assertThat(Files.readString(store.file())).contains("\"pairs_lost\" : true");
        final DesiredState fromSnapshot = new StateStore(dir, clock).load().state();
        assertThat(fromSnapshot).isEqualTo(exported);
        final EgressAllocator again = StateMapper.rebuild(SETTINGS, fromSnapshot, 2).allocator();
        assertThat(scope(again, "m1")).isEqualTo(Scope.PENDING);
        assertThat(scope(again, "m2")).isEqualTo(Scope.PENDING);
        assertThat(again.apps().get(0).pairsLost()).isTrue();

        // A pair is back: both are placed, the flag is gone, and a release now masquerades as it always did.
        final EgressPair pair = new EgressPair(Ipv4Address.parse("203.0.113.20"), Ipv6Address.parse("2001:db8::20"),
            "ord");
        assertThat(again.addPair("a1", pair).ok()).isTrue();
        assertThat(scope(again, "m1")).isEqualTo(Scope.APP);
        assertThat(scope(again, "m2")).isEqualTo(Scope.APP);
        assertThat(StateMapper.export(again, List.of()).apps().get(0).lostPairs()).isFalse();
        assertThat(again.releasePair("a1", pair.ipv4()).ok()).isTrue();
        assertThat(scope(again, "m1")).isEqualTo(Scope.HOST);
    }

    @Test
    void anAppThatOptedOutStillFallsBackToTheHostAddressAndOptingOutEndsTheHold()
    {
        final EgressAllocator open = StateMapper.rebuild(SETTINGS, lostAppPairs(false), 1).allocator();
        assertThat(scope(open, "m1")).isEqualTo(Scope.HOST);
        assertThat(StateMapper.export(open, List.of()).apps().get(0).lostPairs()).isFalse();

        final EgressAllocator closed = StateMapper.rebuild(SETTINGS, lostAppPairs(true), 1).allocator();
        final Outcome optOut = closed.upsertApp("a1", false);
        assertThat(optOut).isInstanceOf(Outcome.Done.class);
        assertThat(((Outcome.Done)optOut).changed()).containsExactlyInAnyOrder("m1", "m2");
        assertThat(scope(closed, "m1")).isEqualTo(Scope.HOST);
        assertThat(closed.upsertApp("a1", true).ok()).isTrue();
        assertThat(scope(closed, "m1")).as("the operator's opt-out ended the hold").isEqualTo(Scope.HOST);
    }

    @Test
    void aLostMachineScopedPairKeepsThatMachineRefusedAndLeavesTheAppsOtherMachinesAlone() throws Exception
    {
        final DesiredState state = new DesiredState(DesiredState.VERSION, HOST,
            List.of(new DesiredState.App("a2", true, List.of(), List.of("m4"))),
            List.of(new DesiredState.MachineEntry("m3", "a2", "tap-m3", "10.77.0.4", null, null, null,
                    new DesiredState.ScopedPair("203.0.113.30", "fe80::30")),
                new DesiredState.MachineEntry("m4", "a2", "tap-m4", "10.77.0.5", null, null, null, null)),
            List.of());
        final StateMapper.Rebuilt rebuilt = StateMapper.rebuild(SETTINGS, state, 1);
        final EgressAllocator allocator = rebuilt.allocator();
        assertThat(scope(allocator, "m3")).isEqualTo(Scope.PENDING);
        assertThat(allocator.egress("m3").orElseThrow().reason()).startsWith(
            "the machine-scoped pair of machine m3 could not be restored from the state file: pending (fail-closed)");
        assertThat(scope(allocator, "m4")).as("never had a pair: masqueraded as before").isEqualTo(Scope.HOST);
        final DesiredState exported = StateMapper.export(allocator, List.of());
        assertThat(exported.machines().get(0).lostPair()).isTrue();
        assertThat(exported.machines().get(1).lostPair()).isFalse();
        final EgressAllocator again = StateMapper.rebuild(SETTINGS, exported, 2).allocator();
        assertThat(scope(again, "m3")).isEqualTo(Scope.PENDING);
        assertThat(again.setMachineScopedPair("m3", new EgressPair(Ipv4Address.parse("203.0.113.31"),
            Ipv6Address.parse("2001:db8::31"), "ord")).ok()).isTrue();
        assertThat(scope(again, "m3")).isEqualTo(Scope.MACHINE);
        assertThat(StateMapper.export(again, List.of()).machines().get(0).lostPair()).isFalse();
    }

    @Test
    void aStateFileWithoutTheFlagsLoadsAsBeforeAndOneWithoutLossesWritesNoFlag() throws Exception
    {
        final StateStore store = new StateStore(dir, clock);
        Files.writeString(store.file(), "{\"version\": 1, \"host\": {\"region\": \"ord\", \"block_count\": 64, "
            + "\"block_size\": 1024, \"destination_cap\": 1024}, \"apps\": [{\"id\": \"a1\", \"fail_closed\": true, "
            + "\"pairs\": [{\"ipv4\": \"203.0.113.10\", \"ipv6\": \"2001:db8::10\", \"drained\": false}], "
            + "\"waiting\": []}], \"machines\": [{\"id\": \"m1\", \"app\": \"a1\", \"interface\": \"tap-m1\", "
            + "\"ipv4\": \"10.77.0.2\", \"slot\": {\"pair\": \"203.0.113.10\", \"block\": 1}}], \"recovered\": []}");
        final StateStore.Loaded loaded = store.load();
        assertThat(loaded.status()).isEqualTo(StateStore.Status.LOADED);
        assertThat(loaded.state().apps().get(0).lostPairs()).isFalse();
        assertThat(loaded.state().machines().get(0).lostPair()).isFalse();
        final EgressAllocator allocator = StateMapper.rebuild(SETTINGS, loaded.state(), 1).allocator();
        assertThat(scope(allocator, "m1")).isEqualTo(Scope.APP);
        store.snapshot(StateMapper.export(allocator, List.of()));
        assertThat(Files.readString(store.file())).doesNotContain("pairs_lost", "pair_lost");
    }
}
