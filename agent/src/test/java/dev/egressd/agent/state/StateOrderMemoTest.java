package dev.egressd.agent.state;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The journal record's diff walks a state to check its id order at most once ({@link StateChange#sortedById}): the
 * loop's exports are taken in order as built, and a state walked once (the one a start loaded) does not push the
 * previous export out, whose walk would push the next one's out, and so on: every change walking the whole host.
 */
class StateOrderMemoTest
{
    private static DesiredState.MachineEntry machine(final int n)
    {
        return new DesiredState.MachineEntry(String.format("m%05d", n), "a1", "tap-m" + n, "10.77.0." + (n % 250),
            null, null, null, null);
    }

    /** A state with machines 0..n-1, in id order, as an export builds it. */
    private static DesiredState export(final int n)
    {
        final List<DesiredState.MachineEntry> machines = new ArrayList<>();
        for (int i = 0; i < n; i++)
        {
            machines.add(machine(i));
        }
        final DesiredState s = new DesiredState(DesiredState.VERSION, StateStoreTest.sample().host(),
            StateStoreTest.sample().apps(), machines, List.of(), List.of());
        StateChange.inOrder(s);
        return s;
    }

    @Test
    void aLoadedStateIsWalkedOnceAndEachExportNever()
    {
        // as a start loads it: built from the files, never walked
        final DesiredState loaded = new DesiredState(DesiredState.VERSION, StateStoreTest.sample().host(),
            StateStoreTest.sample().apps(), new ArrayList<>(export(10).machines()), List.of(), List.of());
        final long walks = StateChange.walks();
        DesiredState before = loaded;
        for (int n = 11; n < 20; n++)
        {
            final DesiredState next = export(n);
            assertThat(StateChange.sortedById(next)).isTrue(); // the store's check
            assertThat(StateChange.between(before, next).isEmpty()).isFalse(); // the record
            before = next;
        }
        assertThat(StateChange.walks() - walks).as("only the loaded state was walked").isEqualTo(1);
    }

    @Test
    void aStateWithOtherDrainingAddressesIsKnownByItsLists()
    {
        final DesiredState s = export(5);
        final long walks = StateChange.walks();
        final DesiredState draining = s.withDraining(List.of());
        assertThat(StateChange.sortedById(draining)).isTrue();
        assertThat(StateChange.walks()).isEqualTo(walks);
    }

    @Test
    void aStateOutOfOrderIsStillFoundSo()
    {
        final List<DesiredState.MachineEntry> reversed = new ArrayList<>(export(5).machines());
        java.util.Collections.reverse(reversed);
        final DesiredState s = new DesiredState(DesiredState.VERSION, StateStoreTest.sample().host(),
            StateStoreTest.sample().apps(), reversed, List.of(), List.of());
        assertThat(StateChange.sortedById(s)).isFalse();
        assertThat(StateChange.sortedById(s)).as("and not remembered as in order").isFalse();
    }
}
