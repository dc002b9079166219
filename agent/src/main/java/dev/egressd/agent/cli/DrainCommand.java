package dev.egressd.agent.cli;

import picocli.CommandLine.Command;

/** {@code egressctl drain PAIR_IPV4}. */
@Command(name = "drain", description = "Drains an app-scoped pair: no new machine is placed on it; the machines "
    + "on it keep their slots (PUT /v1/apps/{app}/pairs/{ipv4}/drain). Repeating it is harmless.")
final class DrainCommand extends PairDrainCommand
{
    @Override
    int run() throws CtlException
    {
        return change(true);
    }
}
