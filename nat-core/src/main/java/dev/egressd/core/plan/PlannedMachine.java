package dev.egressd.core.plan;

import dev.egressd.core.model.Egress;
import dev.egressd.core.model.Machine;

/**
 * A machine and the egress the allocator gave it: the planner's input.
 *
 * @param machine the machine.
 * @param egress  where it leaves from.
 */
public record PlannedMachine(Machine machine, Egress egress)
{
}
