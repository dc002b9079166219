package dev.egressd.agent.state;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Enabled;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Timespan;

/**
 * One journal append, piece by piece, for Java Flight Recorder ({@code jfr print --events dev.egressd.Journal}):
 * the record's diff and JSON, its write, its force to disk (benchmarks/README.md, "One change's wall time, piece by
 * piece"). Off unless a recording asks for it.
 */
@Name("dev.egressd.Journal")
@Label("egressd journal append")
@Category("egressd")
@Description("One journal record: diffed and serialised, written, forced to disk")
@StackTrace(false)
@Enabled(false)
final class JournalEvent extends jdk.jfr.Event
{
    @Label("Bytes")
    int bytes;

    @Label("Record")
    @Description("What changed found and serialised as the record's JSON")
    @Timespan(Timespan.NANOSECONDS)
    long record;

    @Label("Write")
    @Description("The record written to the file")
    @Timespan(Timespan.NANOSECONDS)
    long write;

    @Label("Force")
    @Description("The record forced to disk")
    @Timespan(Timespan.NANOSECONDS)
    long force;
}
