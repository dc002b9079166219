package dev.egressd.agent.reconcile;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.egressd.agent.region.RegionStore.RouterChange;
import dev.egressd.agent.region.RegionStore.RouterRecord;

import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The routers' table and the answers that wait on it (docs/region.md, "Steering"). */
class RouterRevisionsTest
{
    private final List<RouterRevisions> opened = new CopyOnWriteArrayList<>();
    private final List<String> observed = new CopyOnWriteArrayList<>();

    private RouterRevisions table(final long confirmMillis)
    {
        final RouterRevisions t = new RouterRevisions(confirmMillis, System::nanoTime);
        t.observe((state, nanos) -> observed.add(state.text()));
        opened.add(t);
        return t;
    }

    @AfterEach
    void close()
    {
        opened.forEach(RouterRevisions::close);
    }

    private static RouterRecord router(final String id, final long applied)
    {
        return new RouterRecord(id, applied);
    }

    @Test
    void noRouterIsAnsweredAtOnce() throws Exception
    {
        final RouterRevisions t = table(5_000);
        final CompletableFuture<Steering> answer = t.await(42);
        assertThat(answer).isDone();
        assertThat(answer.get()).isEqualTo(new Steering(Steering.State.NO_ROUTER, 42, List.of(), 0));
        assertThat(observed).containsExactly("no_router");
    }

    @Test
    void routersAtOrPastTheRevisionConfirmAtOnce() throws Exception
    {
        final RouterRevisions t = table(5_000);
        t.reset(50, Map.of("r1", router("r1", 42), "r2", router("r2", 49)));
        assertThat(t.await(42).get(0, TimeUnit.SECONDS).state()).isEqualTo(Steering.State.CONFIRMED);
        assertThat(t.waiting()).isZero();
    }

    @Test
    void anAnswerWaitsForTheLastRouterAndIsCompletedOffTheFeedsThread() throws Exception
    {
        final RouterRevisions t = table(10_000);
        t.reset(50, Map.of("r1", router("r1", 40), "r2", router("r2", 30)));
        final CompletableFuture<Steering> answer = t.await(45);
        final CompletableFuture<String> completedOn = answer.thenApply(s -> Thread.currentThread().getName());
        assertThat(answer).isNotDone();
        t.changed(new RouterChange(51, "r1", router("r1", 45)));
        Thread.sleep(100);
        assertThat(answer).as("r2 is still behind").isNotDone();
        assertThat(t.waiting()).isEqualTo(1);
        t.changed(new RouterChange(52, "r2", router("r2", 52)));
        final Steering s = answer.get(5, TimeUnit.SECONDS);
        assertThat(s.state()).isEqualTo(Steering.State.CONFIRMED);
        assertThat(s.revision()).isEqualTo(45);
        assertThat(s.waitingFor()).isEmpty();
        assertThat(s.waitNanos()).isPositive().isLessThan(TimeUnit.SECONDS.toNanos(5));
        assertThat(completedOn.get()).isEqualTo("egressd-steering").isNotEqualTo(Thread.currentThread().getName());
    }

    @Test
    void theDeadlineAnswersUnconfirmedNamingTheRoutersBehind() throws Exception
    {
        final RouterRevisions t = table(300);
        t.reset(50, Map.of("r1", router("r1", 60), "r2", router("r2", 30), "r3", router("r3", 31)));
        final long start = System.nanoTime();
        final Steering s = t.await(55).get(5, TimeUnit.SECONDS);
        assertThat(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start)).isGreaterThanOrEqualTo(290);
        assertThat(s.state()).isEqualTo(Steering.State.UNCONFIRMED);
        assertThat(s.revision()).isEqualTo(55);
        assertThat(s.waitingFor()).containsExactly("r2", "r3");
        assertThat(t.waiting()).isZero();
        assertThat(observed).containsExactly("unconfirmed");
    }

    @Test
    void withoutAWaitTheRoutersBehindAreNamedAtOnce() throws Exception
    {
        final RouterRevisions t = table(0);
        t.reset(50, Map.of("r1", router("r1", 30)));
        final CompletableFuture<Steering> answer = t.await(45);
        assertThat(answer).isDone();
        assertThat(answer.get()).isEqualTo(new Steering(Steering.State.UNCONFIRMED, 45, List.of("r1"), 0));
        assertThatThrownBy(() -> new RouterRevisions(-1, System::nanoTime)).hasMessageContaining("router-confirm-ms");
    }

    @Test
    void aRouterThatStopsNoLongerCountsAndTheLastOneGoneIsNoRouter() throws Exception
    {
        final RouterRevisions t = table(10_000);
        t.reset(50, Map.of("r1", router("r1", 60), "r2", router("r2", 30)));
        final CompletableFuture<Steering> first = t.await(55);
        t.changed(new RouterChange(51, "r2", null));
        assertThat(first.get(5, TimeUnit.SECONDS).state()).as("only live routers count")
            .isEqualTo(Steering.State.CONFIRMED);
        final CompletableFuture<Steering> second = t.await(70);
        assertThat(second).isNotDone();
        t.changed(new RouterChange(52, "r1", null));
        assertThat(second.get(5, TimeUnit.SECONDS).state()).isEqualTo(Steering.State.NO_ROUTER);
        assertThat(t.applied()).isEmpty();
    }

    @Test
    void aChangeOlderThanTheFullReadIsIgnored()
    {
        final RouterRevisions t = table(1_000);
        t.reset(50, Map.of("r1", router("r1", 48)));
        t.changed(new RouterChange(49, "r1", router("r1", 10)));
        t.changed(new RouterChange(50, "r2", router("r2", 10)));
        assertThat(t.applied()).containsExactly(Map.entry("r1", 48L));
        t.changed(new RouterChange(51, "r2", router("r2", 50)));
        assertThat(t.applied()).containsOnlyKeys("r1", "r2");
    }

    @Test
    void closingAnswersTheWaitingUnconfirmed() throws Exception
    {
        final RouterRevisions t = table(60_000);
        t.reset(50, Map.of("r1", router("r1", 30)));
        final CompletableFuture<Steering> answer = t.await(45);
        t.close();
        final Steering s = answer.get(5, TimeUnit.SECONDS);
        assertThat(s.state()).isEqualTo(Steering.State.UNCONFIRMED);
        assertThat(s.waitingFor()).containsExactly("r1");
    }
}
