package dev.egressd.agent.cli;

import picocli.CommandLine.Command;

/** {@code egressctl undrain PAIR_IPV4}. */
@Command(name = "undrain", description = "Undrains a pair: it takes new machines again "
    + "(DELETE /v1/apps/{app}/pairs/{ipv4}/drain).")
final class UndrainCommand extends PairDrainCommand
{
    @Override
    int run() throws CtlException
    {
        return change(false);
    }
}
