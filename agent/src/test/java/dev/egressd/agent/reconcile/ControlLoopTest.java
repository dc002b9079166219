package dev.egressd.agent.reconcile;

import dev.egressd.agent.kernel.FakeKernel;
import dev.egressd.agent.state.StateMapper;
import dev.egressd.agent.state.DesiredState;
import dev.egressd.agent.state.StateFiles;
import dev.egressd.agent.state.StateStore;
import dev.egressd.core.alloc.EgressAllocator;
import dev.egressd.core.model.AddressDevice;
import dev.egressd.core.model.BlockLayout;
import dev.egressd.core.model.Egress;
import dev.egressd.core.model.EgressPair;
import dev.egressd.core.model.HostSettings;
import dev.egressd.core.model.Ipv4Address;
import dev.egressd.core.model.Ipv6Address;
import dev.egressd.core.model.Machine;
import dev.egressd.core.plan.PlanChange;
import dev.egressd.core.plan.PlanElement;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.LinkedHashMap;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

class ControlLoopTest
{
    @TempDir
    Path dir;

    private final HostSettings settings = new HostSettings("ord", new BlockLayout(8, 1024), 1024);
    private final FakeKernel kernel = new FakeKernel();

    private ControlLoop start() throws Exception
    {
        final StateStore store = new StateStore(dir);
        final StateStore.Loaded loaded = store.load();
        final DesiredState state = loaded.state() != null ? loaded.state()
            : DesiredState.empty(StateMapper.host(settings));
        final ControlLoop loop = ControlLoop.of(settings, state, kernel, store, Runnable::run, () -> 0L, 0);
        if (loaded.status() != StateStore.Status.LOADED)
        {
            loop.recoverFromKernel();
        }
        loop.initialSync();
        return loop;
    }

    private static Machine machine(final String id, final String app, final int n)
    {
        return new Machine(id, app, "tap-" + id, Ipv4Address.parse("10.77.0." + n), Ipv6Address.parse("fd77::" + n),
            null);
    }

    private EgressPair pair(final String ipv4, final String ipv6)
    {
        return new EgressPair(Ipv4Address.parse(ipv4), Ipv6Address.parse(ipv6), settings.region());
    }

    private static Map<String, Egress> placements(final ControlLoop loop)
    {
        final Map<String, Egress> map = new LinkedHashMap<>();
        for (final EgressAllocator.MachineView view : loop.allocator().machines())
        {
            final Egress e = view.egress();
            map.put(view.machine().id(), new Egress(e.scope(), e.pair(), e.block(), e.firstPort(), e.lastPort(), ""));
        }
        return map;
    }

    private ControlLoop populated() throws Exception
    {
        final ControlLoop loop = start();
        assertThat(loop.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", pair("203.0.113.10", "2001:db8::10"))).get())
            .isInstanceOf(MutationResult.Ok.class);
        loop.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", pair("203.0.113.11", "2001:db8::11"))).get();
        for (int i = 1; i <= 12; i++)
        {
            final Machine m = machine("m" + i, "a1", i + 1);
            loop.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(m)).get();
        }
        // churn so placements are not simply in creation order
        loop.mutate(Operation.DELETE_MACHINE, "delete", l -> l.allocator().removeMachine("m3")).get();
        loop.mutate(Operation.DELETE_MACHINE, "delete", l -> l.allocator().removeMachine("m7")).get();
        final Machine late = machine("m20", "a1", 40);
        loop.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(late)).get();
        final Machine scoped = machine("m21", "a1", 41);
        loop.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(scoped)).get();
        loop.mutate(Operation.SET_MACHINE_PAIR, "scoped", l -> l.allocator().setMachineScopedPair("m21", pair("203.0.113.20", "2001:db8::20")))
            .get();
        return loop;
    }

    @Test
    void aChangesLogLineIsWrittenAfterItsAnswerAndBeforeTheNextChangeRuns() throws Exception
    {
        final StateStore store = new StateStore(dir);
        final java.util.ArrayDeque<Runnable> tasks = new java.util.ArrayDeque<>();
        final ControlLoop loop = ControlLoop.of(settings, DesiredState.empty(StateMapper.host(settings)), kernel, store,
            tasks::add, () -> 0L, 0);
        loop.initialSync();
        final List<java.util.concurrent.CompletableFuture<MutationResult>> answers = new java.util.ArrayList<>();
        // per "kernel changes" line: which answers were complete when it was written
        final List<String> seen = new java.util.ArrayList<>();
        final ch.qos.logback.classic.Logger logger =
            (ch.qos.logback.classic.Logger)org.slf4j.LoggerFactory.getLogger(ControlLoop.class);
        final ch.qos.logback.core.AppenderBase<ch.qos.logback.classic.spi.ILoggingEvent> appender =
            new ch.qos.logback.core.AppenderBase<>()
            {
                @Override
                protected void append(final ch.qos.logback.classic.spi.ILoggingEvent event)
                {
                    if (event.getFormattedMessage().contains("kernel changes"))
                    {
                        seen.add(event.getFormattedMessage().substring(0, event.getFormattedMessage().indexOf(':'))
                            + " " + answers.stream().map(f -> f.isDone() ? "done" : "waiting").toList());
                    }
                }
            };
        appender.start();
        logger.addAppender(appender);
        try
        {
            answers.add(loop.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1",
                pair("203.0.113.10", "2001:db8::10"))));
            final Machine m = machine("m1", "a1", 2);
            answers.add(loop.mutate(Operation.PUT_MACHINE, "put m1", l -> l.putMachine(m)));
            // one task per mutation: the first takes both (a group), the second finds nothing left
            tasks.poll().run();
            assertThat(answers).allMatch(f -> f.isDone() && f.join() instanceof MutationResult.Ok);
            final Machine m2 = machine("m2", "a1", 3);
            answers.add(loop.mutate(Operation.PUT_MACHINE, "put m2", l -> l.putMachine(m2)));
            while (!tasks.isEmpty())
            {
                tasks.poll().run();
            }
        }
        finally
        {
            logger.detachAppender(appender);
        }
        // each commit's line comes after its answers (the write to stderr is not on their wall time), and before
        // the next commit's (the log keeps the order of the changes)
        assertThat(seen).containsExactly("pair and 1 more [done, done]", "put m2 [done, done, done]");
    }

    @Test
    void aRestartFromTheStateFileMovesNoMachineAndChangesNoKernelElement() throws Exception
    {
        final ControlLoop before = populated();
        final Map<String, Egress> placed = placements(before);
        final var plan = kernel.plan();
        final int batches = kernel.applied.size();
        final ControlLoop after = start();
        assertThat(placements(after)).isEqualTo(placed);
        assertThat(kernel.plan()).isEqualTo(plan);
        assertThat(kernel.applied).hasSize(batches); // nothing to apply: the kernel already holds it all
    }

    @Test
    void aLostStateFileMovesNoMachineOnceTheOrchestratorResendsIt() throws Exception
    {
        final ControlLoop before = populated();
        final Map<String, Egress> placed = placements(before);
        final var plan = kernel.plan();
        Files.writeString(dir.resolve(StateStore.FILE), "{garbage");
        final ControlLoop after = start();
        assertThat(Files.list(dir).map(p -> p.getFileName().toString()))
            .anyMatch(n -> n.startsWith("state.json.corrupt-"));
        // Nothing in the kernel changed: every element is kept as recovered.
        assertThat(kernel.plan()).isEqualTo(plan);
        assertThat(after.recovered()).isNotEmpty();
        // The orchestrator re-sends pairs, then machines in another order.
        after.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", pair("203.0.113.11", "2001:db8::11"))).get();
        after.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", pair("203.0.113.10", "2001:db8::10"))).get();
        for (final String id : new String[] {"m21", "m20", "m12", "m1", "m2", "m4", "m5", "m6", "m8", "m9", "m10",
            "m11"})
        {
            final EgressAllocator.MachineView view = before.allocator().machine(id).orElseThrow();
            after.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(view.machine())).get();
        }
        assertThat(placements(after)).isEqualTo(placed);
        assertThat(after.recovered()).isEmpty();
        assertThat(kernel.plan()).isEqualTo(plan);
    }

    @Test
    void aLostStateFileMovesNoMachineWhenItsMachinesAreResentBeforeTheirPairs() throws Exception
    {
        final ControlLoop before = populated();
        final Map<String, Egress> placed = placements(before);
        final var plan = kernel.plan();
        Files.writeString(dir.resolve(StateStore.FILE), "{garbage");
        final ControlLoop after = start();
        // The app comes back masquerading (fail_closed false) and a machine before any pair: until its pair is
        // back it keeps leaving from its recovered pair and block, not from the host address.
        after.mutate(Operation.PUT_APP, "app", l -> l.allocator().upsertApp("a1", false)).get();
        final Machine m1 = before.allocator().machine("m1").orElseThrow().machine();
        assertThat(after.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(m1)).get())
            .isInstanceOf(MutationResult.Ok.class);
        assertThat(kernel.plan()).as("m1 keeps its recovered egress").isEqualTo(plan);
        // A restart in between keeps it so (the state file holds the recovered elements).
        final ControlLoop again = start();
        assertThat(kernel.plan()).isEqualTo(plan);
        again.mutate(Operation.PUT_APP, "app", l -> l.allocator().upsertApp("a1", true)).get();
        assertThat(kernel.plan()).as("fail-closed now, still on its recovered egress").isEqualTo(plan);
        // The rest in any order: machines first, then the pairs, then the machine-scoped pair's machine.
        for (final String id : new String[] {"m12", "m2", "m20", "m4", "m5", "m6", "m8", "m9", "m10", "m11"})
        {
            final Machine m = before.allocator().machine(id).orElseThrow().machine();
            again.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(m)).get();
            assertThat(kernel.plan()).as(id).isEqualTo(plan);
        }
        again.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", pair("203.0.113.10", "2001:db8::10"))).get();
        assertThat(kernel.plan()).isEqualTo(plan);
        again.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", pair("203.0.113.11", "2001:db8::11"))).get();
        final Machine m21 = before.allocator().machine("m21").orElseThrow().machine();
        again.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(m21)).get();
        assertThat(placements(again)).isEqualTo(placed);
        assertThat(again.recovered()).isEmpty();
        assertThat(kernel.plan()).isEqualTo(plan);
    }

    @Test
    void aStartWithAnIntactStateAndAnUnwritableStateDirectoryServesAndRefusesChanges() throws Exception
    {
        final ControlLoop before = populated();
        final Map<String, Egress> placed = placements(before);
        final var plan = kernel.plan();
        final String file = StateFiles.onDisk(dir);
        for (final boolean drifted : new boolean[] {false, true})
        {
            if (drifted)
            {
                // a start-up that has something to write (a hand-deleted element; state that differs) still serves
                kernel.plan(dev.egressd.core.plan.PlanDiff.apply(kernel.plan(), java.util.List.of(
                    dev.egressd.core.plan.PlanChange.remove(plan.elements("snat4").values().iterator().next()))));
            }
            final StateStore store = new StateStore(dir);
            final StateStore.Loaded loaded = store.load();
            StateFiles.blockWrites(dir); // every write fails, as on a full disk
            assertThat(loaded.status()).isEqualTo(StateStore.Status.LOADED);
            final ControlLoop after = ControlLoop.of(settings, loaded.state(), kernel, store, Runnable::run,
                () -> 0L, 0);
            after.initialSync(true);
            assertThat(placements(after)).isEqualTo(placed);
            assertThat(kernel.plan()).isEqualTo(plan);
            final MutationResult refused = after.mutate(Operation.PUT_MACHINE, "machine",
                l -> l.putMachine(machine("m40", "a1", 90))).get();
            assertThat(refused).isInstanceOf(MutationResult.StateUnwritable.class);
            assertThat(((MutationResult.StateUnwritable)refused).message())
                .contains(dir.toString(), "Is a directory");
            assertThat(after.stateProblem()).isNotNull();
            assertThat(after.allocator().machine("m40")).isEmpty();
            assertThat(kernel.plan()).as("the kernel change was undone").isEqualTo(plan);
            StateFiles.unblockWrites(dir);
            assertThat(StateFiles.onDisk(dir)).isEqualTo(file);
        }
    }

    @Test
    void theSnapshotForTheMetricsIsBuiltWhenAskedForNotPerChange() throws Exception
    {
        final java.util.concurrent.ExecutorService thread = java.util.concurrent.Executors.newSingleThreadExecutor();
        try
        {
            final ControlLoop loop = ControlLoop.of(settings, DesiredState.empty(StateMapper.host(settings)), kernel,
                new StateStore(dir), thread, () -> 0L, 0);
            thread.submit(() ->
            {
                loop.initialSync();
                return null;
            }).get();
            loop.mutate(Operation.PUT_APP, "app", l -> l.allocator().upsertApp("a1", true)).get();
            loop.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1",
                pair("203.0.113.1", "2001:db8::1"))).get();
            final var before = loop.published();
            for (int i = 1; i <= 3; i++)
            {
                final Machine m = machine("m" + i, "a1", i);
                loop.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(m)).get();
            }
            // asked from another thread after three changes: built once, on the loop, with all three
            final var now = loop.published();
            assertThat(now).isNotSameAs(before);
            assertThat(now.machines()).extracting(v -> v.machine().id()).containsExactly("m1", "m2", "m3");
            assertThat(loop.published()).as("nothing changed since: the same snapshot").isSameAs(now);
            loop.mutate(Operation.DELETE_MACHINE, "delete", l -> l.allocator().removeMachine("m2")).get();
            assertThat(loop.published().machines()).extracting(v -> v.machine().id()).containsExactly("m1", "m3");
        }
        finally
        {
            thread.shutdownNow();
        }
    }

    @Test
    void aStartWithoutAnIntactStateStillNeedsToWriteIt() throws Exception
    {
        Files.createDirectory(dir.resolve(StateStore.TEMP));
        final ControlLoop loop = ControlLoop.of(settings, DesiredState.empty(StateMapper.host(settings)), kernel,
            new StateStore(dir), Runnable::run, () -> 0L, 0);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> loop.initialSync(false))
            .isInstanceOf(java.io.IOException.class).hasMessageContaining("Is a directory");
    }

    @Test
    void aStateWriteFailureNamesTheFileAndTheSystemsReason()
    {
        final Path temp = dir.resolve(StateStore.TEMP);
        assertThat(StateStore.describe(new java.nio.file.AccessDeniedException(temp.toString()), temp))
            .isEqualTo(temp + ": Permission denied");
        assertThat(StateStore.describe(new java.io.IOException("No space left on device"), temp))
            .isEqualTo(temp + ": No space left on device");
        assertThat(StateStore.describe(new java.nio.file.FileSystemException(dir.toString(), null,
            "Read-only file system"), temp)).isEqualTo(dir + ": Read-only file system");
    }

    @Test
    void anAddressSomeoneElsePutOnTheUplinkIsNeverRemoved() throws Exception
    {
        final ControlLoop loop = populated();
        final PlanElement hostOwn = new PlanElement.Uplink4(Ipv4Address.parse("198.51.100.7"));
        kernel.foreignUplinks.add(hostOwn);
        loop.reconcile();
        assertThat(kernel.foreignUplinks).contains(hostOwn);
        assertThat(kernel.applied.stream().flatMap(java.util.List::stream)
            .anyMatch(c -> c.element().equals(hostOwn))).as("no change ever touches it").isFalse();
        // but a deleted snat element of ours is back after one reconcile
        final PlanElement snat = kernel.plan().elements("snat4").values().iterator().next();
        kernel.plan(dev.egressd.core.plan.PlanDiff.apply(kernel.plan(),
            java.util.List.of(dev.egressd.core.plan.PlanChange.remove(snat))));
        loop.reconcile();
        assertThat(kernel.plan().contains(snat)).isTrue();
        assertThat(loop.health().repairs()).isEqualTo(1);
    }

    @Test
    void aMutationDiffsAgainstWhatTheKernelLastHeldAndReadsItBackOnlyWhenThatFails() throws Exception
    {
        final ControlLoop loop = populated();
        final int reads = kernel.reads;
        final Machine fresh = machine("m30", "a1", 60);
        loop.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(fresh)).get();
        assertThat(kernel.reads).as("no read for a mutation when nothing changed behind egressd's back")
            .isEqualTo(reads);
        assertThat(kernel.plan()).isEqualTo(loop.desiredPlan());

        // someone deletes m30's snat4 element by hand; deleting m30 then removes a missing element, which nft
        // refuses: the loop reads the kernel back and applies the right diff instead
        final PlanElement snat = kernel.plan().elements("snat4").get(fresh.ipv4());
        kernel.plan(dev.egressd.core.plan.PlanDiff.apply(kernel.plan(),
            java.util.List.of(dev.egressd.core.plan.PlanChange.remove(snat))));
        assertThat(loop.mutate(Operation.DELETE_MACHINE, "delete", l -> l.allocator().removeMachine("m30")).get())
            .isInstanceOf(MutationResult.Ok.class);
        assertThat(kernel.reads).isEqualTo(reads + 1);
        assertThat(kernel.plan()).isEqualTo(loop.desiredPlan());
        assertThat(kernel.plan().elements("guests4")).doesNotContainKey(
            new PlanElement.Guest4("tap-m30", fresh.ipv4()));
    }

    @Test
    void theIncrementalPlanIsCheckedAgainstAWholeBuildOnceAMinuteAndStaysEqualThroughChangesAndARollback()
        throws Exception
    {
        final ControlLoop loop = populated();
        loop.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(machine("m31", "a1", 61))).get();
        loop.mutate(Operation.DELETE_MACHINE, "delete", l -> l.allocator().removeMachine("m31")).get();
        // a mutation that throws rebuilds the allocator from the committed state (a rollback)
        loop.mutate(Operation.PUT_MACHINE, "boom", l ->
        {
            l.allocator().upsertMachine(machine("m32", "a1", 62));
            throw new IllegalStateException("boom");
        }).get();
        assertThat(loop.desiredPlan()).isEqualTo(loop.fullDesiredPlan());
        assertThat(kernel.plan()).isEqualTo(loop.fullDesiredPlan());
        for (int i = 0; i < ControlLoop.PLAN_CHECK_EVERY; i++)
        {
            loop.reconcile();
        }
        assertThat(loop.checkDesiredPlan()).isTrue();
        assertThat(loop.desiredPlanMismatches()).isZero();
    }

    @Test
    void aReleasedAddressKeepsDrainingAcrossARestartUntilItsDeadlineThenGoes() throws Exception
    {
        final java.util.concurrent.atomic.AtomicLong nanos = new java.util.concurrent.atomic.AtomicLong(5_000);
        final java.util.concurrent.atomic.AtomicLong wall = new java.util.concurrent.atomic.AtomicLong(
            1_700_000_000_000L);
        final StateStore store = new StateStore(dir);
        final ControlLoop first = ControlLoop.of(settings, DesiredState.empty(StateMapper.host(settings)), kernel,
            store, Runnable::run, nanos::get, wall::get, 100);
        first.initialSync();
        first.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", pair("203.0.113.10", "2001:db8::10"))).get();
        final Machine m1 = machine("m1", "a1", 2);
        first.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(m1)).get();
        final PlanElement up4 = new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.10"));
        final PlanElement up6 = new PlanElement.Uplink6(Ipv6Address.parse("2001:db8::10"));
        assertThat(first.mutate(Operation.RELEASE_PAIR, "release",
            l -> l.allocator().releasePair("a1", Ipv4Address.parse("203.0.113.10"))).get())
            .isInstanceOf(MutationResult.Ok.class);
        assertThat(kernel.plan().contains(up4) && kernel.plan().contains(up6)).as("draining").isTrue();
        final DesiredState written = store.load().state();
        assertThat(written.draining()).extracting(DesiredState.Draining::untilEpochMillis)
            .containsOnly(1_700_000_100_000L);

        // "restart" 30 s later: a new process, a new monotonic clock base, the kernel still holds the addresses
        wall.addAndGet(30_000);
        nanos.set(-7_000_000_000L);
        final ControlLoop second = ControlLoop.of(settings, store.load().state(), kernel, store, Runnable::run,
            nanos::get, wall::get, 100);
        second.initialSync();
        assertThat(kernel.plan().contains(up4) && kernel.plan().contains(up6)).as("kept at start-up").isTrue();
        nanos.addAndGet(69_000_000_000L); // 99 s after the release
        second.reconcile();
        assertThat(kernel.plan().contains(up4) && kernel.plan().contains(up6)).as("kept until the deadline").isTrue();
        nanos.addAndGet(1_000_000_000L); // 100 s: the deadline
        second.reconcile();
        assertThat(kernel.plan().contains(up4) || kernel.plan().contains(up6)).as("removed at the deadline").isFalse();
        assertThat(placements(second)).containsKey("m1");
    }

    @Test
    void movingThePairAddressesToLoDrainsThemOffTheUplinkAndALoAddressDrainsAcrossARestart() throws Exception
    {
        final java.util.concurrent.atomic.AtomicLong nanos = new java.util.concurrent.atomic.AtomicLong(5_000);
        final java.util.concurrent.atomic.AtomicLong wall = new java.util.concurrent.atomic.AtomicLong(
            1_700_000_000_000L);
        final StateStore store = new StateStore(dir);
        final ControlLoop onUplink = ControlLoop.of(settings, DesiredState.empty(StateMapper.host(settings)), kernel,
            store, Runnable::run, nanos::get, wall::get, 100);
        onUplink.initialSync();
        onUplink.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", pair("203.0.113.10", "2001:db8::10"))).get();
        final Machine m1 = machine("m1", "a1", 2);
        onUplink.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(m1)).get();
        final Ipv4Address a4 = Ipv4Address.parse("203.0.113.10");
        final Ipv6Address a6 = Ipv6Address.parse("2001:db8::10");
        assertThat(kernel.plan().elements("uplink4").values()).containsExactly(new PlanElement.Uplink4(a4));

        // the next start says lo: the addresses move in one apply, on lo before off the uplink, so the host never
        // lacks them (its flows keep their address: nothing to drain)
        final HostSettings lo = new HostSettings(settings.region(), settings.layout(), settings.destinationCap(),
            AddressDevice.LO);
        final int batches = kernel.applied.size();
        final ControlLoop onLo = ControlLoop.of(lo, store.load().state(), kernel, store, Runnable::run, nanos::get,
            wall::get, 100);
        onLo.initialSync();
        assertThat(kernel.plan().elements("uplink4").values()).containsExactly(
            new PlanElement.Uplink4(a4, AddressDevice.LO));
        assertThat(kernel.plan().elements("uplink6").values()).containsExactly(
            new PlanElement.Uplink6(a6, AddressDevice.LO));
        assertThat(kernel.applied).hasSize(batches + 1);
        final List<PlanChange> move = kernel.applied.get(batches);
        assertThat(move.indexOf(PlanChange.add(new PlanElement.Uplink4(a4, AddressDevice.LO))))
            .isNotNegative().isLessThan(move.indexOf(PlanChange.remove(new PlanElement.Uplink4(a4))));
        assertThat(move).as("the table is untouched").allMatch(c -> c.element().kind().startsWith("uplink"));

        // released on lo: it drains there, and the state file says where it is
        onLo.mutate(Operation.RELEASE_PAIR, "release", l -> l.allocator().releasePair("a1", a4)).get();
        assertThat(store.load().state().draining()).extracting(d -> d.element().iface()).containsOnly("lo");
        final ControlLoop restarted = ControlLoop.of(lo, store.load().state(), kernel, store, Runnable::run,
            nanos::get, wall::get, 100);
        restarted.initialSync();
        assertThat(kernel.plan().elements("uplink4").values()).as("kept on lo across the restart")
            .containsExactly(new PlanElement.Uplink4(a4, AddressDevice.LO));
        nanos.addAndGet(100_000_000_000L);
        wall.addAndGet(100_000L);
        restarted.reconcile();
        assertThat(kernel.plan().elements("uplink4")).isEmpty();
        assertThat(kernel.plan().elements("uplink6")).isEmpty();
    }

    @Test
    void anAddressElementNamesNoInterfaceOnTheUplinkAndLoOnLoAndNothingElse()
    {
        final PlanElement onLo = new PlanElement.Uplink6(Ipv6Address.parse("2001:db8::10"), AddressDevice.LO);
        assertThat(StateMapper.toData(onLo).iface()).isEqualTo("lo");
        assertThat(StateMapper.fromData(StateMapper.toData(onLo))).isEqualTo(onLo);
        final PlanElement onUplink = new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.10"));
        assertThat(StateMapper.toData(onUplink).iface()).isNull();
        assertThat(StateMapper.fromData(StateMapper.toData(onUplink))).isEqualTo(onUplink);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> StateMapper.fromData(
            new DesiredState.Element("uplink4", "eth0", "203.0.113.10", null, null, null)))
            .isInstanceOf(IllegalArgumentException.class)
            .hasMessage("an egress address is on the uplink (no interface) or on lo, not on eth0");
    }

    @Test
    void aDrainingAddressIsNotAddedBackWhenTheKernelLostItAndAPastDeadlineIsDropped() throws Exception
    {
        final DesiredState.Element up4 = StateMapper.toData(new PlanElement.Uplink4(Ipv4Address.parse("203.0.113.10")));
        final DesiredState.Element up6 = StateMapper.toData(new PlanElement.Uplink6(Ipv6Address.parse("2001:db8::10")));
        final DesiredState state = DesiredState.empty(StateMapper.host(settings)).withDraining(java.util.List.of(
            new DesiredState.Draining(up4, 2_000_000L), new DesiredState.Draining(up6, 500_000L)));
        // the kernel holds neither address (a reboot, say)
        final ControlLoop loop = ControlLoop.of(settings, state, kernel, new StateStore(dir), Runnable::run,
            () -> 0L, () -> 1_000_000L, 100);
        loop.initialSync();
        assertThat(kernel.plan().elements("uplink4")).isEmpty();
        assertThat(kernel.plan().elements("uplink6")).isEmpty();
        assertThat(new StateStore(dir).load().state().draining()).isEmpty();
    }

    @Test
    void aStateFileWithoutDrainingLoadsAsNoneDraining() throws Exception
    {
        populated();
        final String text = Files.readString(dir.resolve(StateStore.FILE)) + Files.readString(dir.resolve(StateStore.JOURNAL),
            java.nio.charset.StandardCharsets.ISO_8859_1);
        assertThat(text).doesNotContain("draining");
        assertThat(new StateStore(dir).load().state().draining()).isEmpty();
    }

    @Test
    void aFailingDirectoryFsyncAfterTheRenameStillCommitsTheChange() throws Exception
    {
        final java.util.concurrent.atomic.AtomicBoolean failing = new java.util.concurrent.atomic.AtomicBoolean();
        final java.util.concurrent.atomic.AtomicInteger syncs = new java.util.concurrent.atomic.AtomicInteger();
        final StateStore store = new StateStore(dir, java.time.Clock.systemUTC(), d ->
        {
            syncs.incrementAndGet();
            if (failing.get())
            {
                throw new java.io.IOException("EIO (test)");
            }
        });
        final ControlLoop loop = ControlLoop.of(settings, DesiredState.empty(StateMapper.host(settings)), kernel,
            store, Runnable::run, () -> 0L, 0);
        store.compactEvery(1); // the change below is written as a snapshot: the path with a rename and a directory fsync
        loop.initialSync();
        loop.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", pair("203.0.113.10", "2001:db8::10"))).get();
        failing.set(true);
        syncs.set(0);
        final Machine m1 = machine("m1", "a1", 2);
        assertThat(loop.mutate(Operation.PUT_MACHINE, "machine",
            l -> l.putMachine(m1)).get()).isInstanceOf(MutationResult.Ok.class);
        assertThat(syncs.get()).as("retried once").isEqualTo(2);
        // not rolled back: the allocator, the kernel and the file (what the next start reads) all hold m1
        assertThat(loop.allocator().machine("m1")).isPresent();
        assertThat(kernel.plan().elements("snat4")).containsKey(m1.ipv4());
        assertThat(store.load().state().machines()).extracting(DesiredState.MachineEntry::id).containsExactly("m1");
    }

    @Test
    void aMachineOnAnInterfaceOutsideTheGuestPatternIsRefusedAndNothingChanges() throws Exception
    {
        final ControlLoop loop = populated();
        loop.guestInterfaces("tap-*");
        final var plan = kernel.plan();
        final String file = StateFiles.onDisk(dir);
        final Machine outside = new Machine("m40", "a1", "vm-1", Ipv4Address.parse("10.77.0.90"), null, null);
        final MutationResult result = loop.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(outside)).get();
        assertThat(result).isInstanceOf(MutationResult.Refused.class);
        final var refusal = ((MutationResult.Refused)result).refusal();
        assertThat(refusal.code()).isEqualTo(dev.egressd.core.alloc.Outcome.Reason.INVALID);
        assertThat(refusal.field()).isEqualTo("interface");
        assertThat(refusal.message()).contains("vm-1", "tap-*");
        assertThat(kernel.plan()).isEqualTo(plan);
        assertThat(StateFiles.onDisk(dir)).isEqualTo(file);
        assertThat(loop.allocator().machine("m40")).isEmpty();
    }

    @Test
    void theGuestPatternIsANameOrAPrefixEndingInAStar()
    {
        assertThat(ControlLoop.matchesGuestInterfaces("tap-*", "tap-m1")).isTrue();
        assertThat(ControlLoop.matchesGuestInterfaces("tap-*", "tap-")).isTrue();
        assertThat(ControlLoop.matchesGuestInterfaces("tap-*", "vm-1")).isFalse();
        assertThat(ControlLoop.matchesGuestInterfaces("tap-*", "xtap-1")).isFalse();
        assertThat(ControlLoop.matchesGuestInterfaces("guest0", "guest0")).isTrue();
        assertThat(ControlLoop.matchesGuestInterfaces("guest0", "guest01")).isFalse();
        assertThat(ControlLoop.matchesGuestInterfaces(null, "anything")).isTrue();
    }

    // ------------------------------------------------------------------------------------------- group commit

    /** A loop whose thread is the test: tasks queue until {@link java.util.Queue#poll()}ed and run. */
    private record Queued(ControlLoop loop, StateStore store, java.util.ArrayDeque<Runnable> tasks)
    {
        void runAll()
        {
            Runnable task;
            while ((task = tasks.poll()) != null)
            {
                task.run();
            }
        }
    }

    private Queued queued() throws Exception
    {
        final java.util.ArrayDeque<Runnable> tasks = new java.util.ArrayDeque<>();
        final StateStore store = new StateStore(dir);
        store.load();
        final ControlLoop loop = ControlLoop.of(settings, DesiredState.empty(StateMapper.host(settings)), kernel,
            store, tasks::add, () -> 0L, 0);
        loop.initialSync();
        final Queued q = new Queued(loop, store, tasks);
        loop.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", pair("203.0.113.10", "2001:db8::10")));
        q.runAll();
        return q;
    }

    @Test
    void changesQueuedBehindEachOtherShareOneKernelSyncAndOneFsyncAndAreAnsweredAfterBoth() throws Exception
    {
        final Queued q = queued();
        final int batches = kernel.applied.size();
        final long syncs = q.store().syncs();
        final long commits = q.loop().batches();
        final java.util.List<java.util.concurrent.CompletableFuture<MutationResult>> answers = new java.util.ArrayList<>();
        final java.util.List<String> seenAtAnswer = new java.util.concurrent.CopyOnWriteArrayList<>();
        for (int i = 1; i <= 5; i++)
        {
            final Machine m = machine("m" + i, "a1", i + 1);
            final java.util.concurrent.CompletableFuture<MutationResult> answer =
                q.loop().mutate(Operation.PUT_MACHINE, "machine " + m.id(), l -> l.putMachine(m));
            // what holds the moment the answer is given: the kernel element and the state on disk
            answer.thenRun(() -> seenAtAnswer.add(m.id() + " kernel=" + kernel.plan().elements("snat4")
                .containsKey(m.ipv4()) + " disk=" + onDisk().contains("\"" + m.id() + "\"")));
            answers.add(answer);
        }
        assertThat(answers).noneMatch(java.util.concurrent.CompletableFuture::isDone);
        q.runAll();
        assertThat(answers).allMatch(a -> a.join() instanceof MutationResult.Ok);
        assertThat(kernel.applied.size() - batches).as("one kernel batch for the five").isEqualTo(1);
        assertThat(kernel.applied.get(kernel.applied.size() - 1)).hasSizeGreaterThanOrEqualTo(5);
        assertThat(q.store().syncs() - syncs).as("one fsync for the five").isEqualTo(1);
        assertThat(q.loop().batches() - commits).isEqualTo(1);
        assertThat(seenAtAnswer).containsExactly("m1 kernel=true disk=true", "m2 kernel=true disk=true",
            "m3 kernel=true disk=true", "m4 kernel=true disk=true", "m5 kernel=true disk=true");
        // each keeps the view of its own result
        assertThat(q.loop().allocator().machines()).hasSize(5);
    }

    private String onDisk()
    {
        try
        {
            return StateFiles.onDisk(dir);
        }
        catch (final java.io.IOException e)
        {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @Test
    void aRefusalInABatchAnswersThatOneAndTheOthersStillCommit() throws Exception
    {
        final Queued q = queued();
        final Machine m1 = machine("m1", "a1", 2);
        final Machine bad = new Machine("m2", "a1", "vm-2", Ipv4Address.parse("10.77.0.3"), null, null);
        final Machine m3 = machine("m3", "a1", 4);
        final var a1 = q.loop().mutate(Operation.PUT_MACHINE, "m1", l -> l.putMachine(m1),
            l -> l.allocator().machine("m1").orElseThrow().egress());
        final var a2 = q.loop().mutate(Operation.PUT_MACHINE, "m2", l -> l.putMachine(bad));
        final var a3 = q.loop().mutate(Operation.PUT_MACHINE, "m3", l -> l.putMachine(m3));
        final var seen = new java.util.ArrayList<ChangeObserver.Outcome>();
        q.loop().observeChanges((operation, outcome, nanos) -> seen.add(outcome));
        q.runAll();
        assertThat(a1.join()).isInstanceOf(MutationResult.Ok.class);
        assertThat(((MutationResult.Ok)a1.join()).view()).isEqualTo(q.loop().allocator().machine("m1").orElseThrow()
            .egress());
        assertThat(a2.join()).isInstanceOf(MutationResult.Refused.class);
        assertThat(((MutationResult.Refused)a2.join()).refusal().field()).isEqualTo("interface");
        assertThat(a3.join()).isInstanceOf(MutationResult.Ok.class);
        assertThat(seen).containsExactly(ChangeObserver.Outcome.OK, ChangeObserver.Outcome.REFUSED,
            ChangeObserver.Outcome.OK);
        assertThat(kernel.plan().elements("snat4")).containsKeys(m1.ipv4(), m3.ipv4())
            .doesNotContainKey(bad.ipv4());
        assertThat(new StateStore(dir).load().state().machines()).extracting(DesiredState.MachineEntry::id)
            .containsExactly("m1", "m3");
    }

    @Test
    void aFailingKernelUndoesTheWholeBatchAndAnswersEachUnavailable() throws Exception
    {
        final Queued q = queued();
        final var plan = kernel.plan();
        final String file = StateFiles.onDisk(dir);
        final var answers = new java.util.ArrayList<java.util.concurrent.CompletableFuture<MutationResult>>();
        for (int i = 1; i <= 3; i++)
        {
            final Machine m = machine("m" + i, "a1", i + 1);
            answers.add(q.loop().mutate(Operation.PUT_MACHINE, m.id(), l -> l.putMachine(m)));
        }
        kernel.failing = "netlink: operation not permitted";
        q.runAll();
        kernel.failing = null;
        assertThat(answers).allMatch(a -> a.join() instanceof MutationResult.Unavailable);
        assertThat(q.loop().allocator().machines()).isEmpty();
        assertThat(kernel.plan()).isEqualTo(plan);
        assertThat(StateFiles.onDisk(dir)).isEqualTo(file);
        // and the next batch works
        final Machine m9 = machine("m9", "a1", 30);
        final var again = q.loop().mutate(Operation.PUT_MACHINE, "m9", l -> l.putMachine(m9));
        q.runAll();
        assertThat(again.join()).isInstanceOf(MutationResult.Ok.class);
    }

    @Test
    void aMutationThatThrowsInABatchIsAnsweredAloneAndTheOthersRunAgainWithoutIt() throws Exception
    {
        final Queued q = queued();
        final Machine m1 = machine("m1", "a1", 2);
        final Machine m3 = machine("m3", "a1", 4);
        final var a1 = q.loop().mutate(Operation.PUT_MACHINE, "m1", l -> l.putMachine(m1));
        final var a2 = q.loop().mutate(Operation.PUT_MACHINE, "boom", l ->
        {
            l.putMachine(machine("m2", "a1", 3)); // half done, then a bug
            throw new IllegalStateException("bug (test)");
        });
        final var a3 = q.loop().mutate(Operation.PUT_MACHINE, "m3", l -> l.putMachine(m3));
        q.runAll();
        assertThat(a1.join()).isInstanceOf(MutationResult.Ok.class);
        assertThat(a2.join()).isInstanceOf(MutationResult.Unavailable.class);
        assertThat(a3.join()).isInstanceOf(MutationResult.Ok.class);
        assertThat(q.loop().allocator().machine("m2")).as("the half-done change is undone").isEmpty();
        assertThat(new StateStore(dir).load().state().machines()).extracting(DesiredState.MachineEntry::id)
            .containsExactly("m1", "m3");
    }

    @Test
    void aCleanStopFoldsTheJournalIntoTheSnapshotAndAStartThatNeverSyncedWritesNothing() throws Exception
    {
        final ControlLoop loop = populated();
        final String expected = StateFiles.onDisk(dir);
        assertThat(Files.readString(dir.resolve(StateStore.FILE))).as("the changes are in the journal")
            .doesNotContain("\"m21\"");
        loop.snapshotOnStop();
        // state.json alone now holds everything (what an egressd before the journal reads)
        final StateStore alone = new StateStore(dir.resolve("alone"));
        Files.createDirectories(dir.resolve("alone"));
        Files.copy(dir.resolve(StateStore.FILE), dir.resolve("alone").resolve(StateStore.FILE));
        assertThat(alone.toJson(alone.load().state())).isEqualTo(expected);
        final Path fresh = dir.resolve("fresh");
        final ControlLoop never = ControlLoop.of(settings, DesiredState.empty(StateMapper.host(settings)), kernel,
            new StateStore(fresh), Runnable::run, () -> 0L, 0);
        never.snapshotOnStop();
        assertThat(fresh.resolve(StateStore.FILE)).doesNotExist();
    }

    @Test
    void aDamagedJournalIsKeptAsideAndTheKernelKeepsEveryMachineUntilItIsResent() throws Exception
    {
        final ControlLoop before = populated();
        final Map<String, Egress> placed = placements(before);
        final var plan = kernel.plan();
        // the first record after the journal's head damaged; the records after it are intact
        final byte[] journal = Files.readAllBytes(dir.resolve(StateStore.JOURNAL));
        final int head = 12 + java.nio.ByteBuffer.wrap(journal).getInt();
        journal[head + 12 + 3] ^= 0x01;
        Files.write(dir.resolve(StateStore.JOURNAL), journal);
        final ControlLoop after = start();
        assertThat(Files.list(dir).map(p -> p.getFileName().toString()))
            .anyMatch(n -> n.startsWith("journal.corrupt-")).anyMatch(n -> n.startsWith("state.json.corrupt-"));
        assertThat(kernel.plan()).as("nothing in the kernel changed: all kept as recovered").isEqualTo(plan);
        assertThat(after.recovered()).isNotEmpty();
        after.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", pair("203.0.113.10", "2001:db8::10"))).get();
        after.mutate(Operation.ADD_PAIR, "pair", l -> l.allocator().addPair("a1", pair("203.0.113.11", "2001:db8::11"))).get();
        for (final String id : placed.keySet())
        {
            final EgressAllocator.MachineView view = before.allocator().machine(id).orElseThrow();
            after.mutate(Operation.PUT_MACHINE, "machine", l -> l.putMachine(view.machine())).get();
        }
        assertThat(placements(after)).isEqualTo(placed);
        assertThat(kernel.plan()).isEqualTo(plan);
    }
}
