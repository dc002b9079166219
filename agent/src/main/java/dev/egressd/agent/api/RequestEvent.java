package dev.egressd.agent.api;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Enabled;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Timespan;

/**
 * One API request, piece by piece, for Java Flight Recorder ({@code jfr print --events dev.egressd.Request}): the
 * API's share of a change's wall-clock time (benchmarks/README.md, "One change's wall time, piece by piece"). Off
 * unless a recording asks for it.
 */
@Name("dev.egressd.Request")
@Label("egressd API request")
@Category("egressd")
@Description("One API request: dispatched, waited for, handed back to the event loop, written")
@StackTrace(false)
@Enabled(false)
final class RequestEvent extends jdk.jfr.Event
{
    @Label("Method")
    String method;

    @Label("URI")
    String uri;

    @Label("Status")
    int status;

    @Label("Queued")
    @Description("From the request decoded to its turn on the connection (pipelined requests wait here)")
    @Timespan(Timespan.NANOSECONDS)
    long queued;

    @Label("Dispatch")
    @Description("The request routed and its body parsed, up to the mutation queued to the loop")
    @Timespan(Timespan.NANOSECONDS)
    long dispatch;

    @Label("Waited")
    @Description("From the dispatch's return to the answer's completion (the loop's commit)")
    @Timespan(Timespan.NANOSECONDS)
    long waited;

    @Label("Hop")
    @Description("From the answer's completion to the event loop writing it")
    @Timespan(Timespan.NANOSECONDS)
    long hop;

    @Label("Serialise")
    @Description("The answer's body serialised (JSON)")
    @Timespan(Timespan.NANOSECONDS)
    long serialise;

    @Label("Write")
    @Description("The serialised answer encoded as HTTP and written to the socket, to the write's completion")
    @Timespan(Timespan.NANOSECONDS)
    long write;

    @Label("Write CPU")
    @Description("The event loop thread's CPU time from the serialisation to the write's completion: less than "
        + "serialise + write when the thread waited for a core meanwhile")
    @Timespan(Timespan.NANOSECONDS)
    long writeCpu;
}
