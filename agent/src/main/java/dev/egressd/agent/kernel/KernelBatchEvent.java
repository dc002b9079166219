package dev.egressd.agent.kernel;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Enabled;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Timespan;

/**
 * One change of the kernel's table ({@link NftKernel#apply}), for Java Flight Recorder ({@code jfr print --events
 * dev.egressd.KernelBatch}): the nf_tables batch encoded, sent and acknowledged (benchmarks/README.md, "One change's
 * wall time, piece by piece"). Off unless a recording asks for it.
 */
@Name("dev.egressd.KernelBatch")
@Label("egressd kernel batch")
@Category("egressd")
@Description("One apply of plan changes: uplink addresses added, the nf_tables batch sent and acknowledged")
@StackTrace(false)
@Enabled(false)
final class KernelBatchEvent extends jdk.jfr.Event
{
    @Label("Changes")
    int changes;

    @Label("Batch")
    @Description("The nf_tables batch encoded, sent (one sendmsg) and its acknowledgement read")
    @Timespan(Timespan.NANOSECONDS)
    long batch;
}
