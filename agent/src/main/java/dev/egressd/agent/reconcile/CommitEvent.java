package dev.egressd.agent.reconcile;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Enabled;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Timespan;

/**
 * One commit of the control loop (one mutation, or a group of them), piece by piece, for Java Flight Recorder
 * ({@code jfr print --events dev.egressd.Commit}): where one change's wall-clock time goes on the loop thread
 * (benchmarks/README.md, "One change's wall time, piece by piece"). Off unless a recording asks for it; a disabled
 * event costs a check.
 */
@Name("dev.egressd.Commit")
@Label("egressd commit")
@Category("egressd")
@Description("One commit of the control loop: the hand-off, the allocator, the kernel batch, the journal, the answers")
@StackTrace(false)
@Enabled(false)
final class CommitEvent extends jdk.jfr.Event
{
    @Label("Mutations")
    int mutations;

    @Label("Hand-off")
    @Description("From the first mutation's queueing to the loop thread starting the commit")
    @Timespan(Timespan.NANOSECONDS)
    long handoff;

    @Label("Allocator")
    @Description("The mutations run on the allocator, and their answers' views built")
    @Timespan(Timespan.NANOSECONDS)
    long allocator;

    @Label("Kernel")
    @Description("The plan's changes found and sent to the kernel as one batch, its acknowledgement read")
    @Timespan(Timespan.NANOSECONDS)
    long kernel;

    @Label("Export")
    @Description("The state to persist exported and compared with the committed one")
    @Timespan(Timespan.NANOSECONDS)
    long export;

    @Label("Journal")
    @Description("The journal record written and forced to disk")
    @Timespan(Timespan.NANOSECONDS)
    long journal;

    @Label("After")
    @Description("The conntrack monitor told, the observers called")
    @Timespan(Timespan.NANOSECONDS)
    long after;

    @Label("Monitor")
    @Description("Of After: the conntrack monitor told what changed")
    @Timespan(Timespan.NANOSECONDS)
    long monitor;

    @Label("Answers")
    @Description("The answers completed (their continuations run on the loop thread, up to the hand-off back)")
    @Timespan(Timespan.NANOSECONDS)
    long answers;

    @Label("Logged")
    @Description("After the answers: the commit's log line written (not on the answers' wall time)")
    @Timespan(Timespan.NANOSECONDS)
    long logged;
}
