package dev.egressd.core.ledger;

/** The contract, run against the reference model, so the model the property test trusts is itself checked. */
class ReferenceLedgerTest extends DestinationLedgerContract
{
    @Override
    ConnectionLedger newLedger(final int destinationCap)
    {
        return new ReferenceLedger(destinationCap);
    }
}
