package dev.egressd.agent.kernel.nft;

/**
 * The narrow door to nftables: run one transaction, or list something as JSON. Implemented by
 * {@link LibNftablesClient} (libnftables in-process) and, in tests, by an in-memory fake.
 */
public interface NftablesClient
{
    /**
     * Runs nft commands (one per line, or a {@code table ... { }} block) as ONE transaction: either every
     * command takes effect or none does (docs/design.md, invariant 7).
     *
     * @param script the nft text.
     * @throws NftException when nft or the kernel refuses any part; then nothing changed.
     */
    void run(String script) throws NftException;

    /**
     * Runs one read command with JSON output, e.g. {@code list table inet egressd}.
     *
     * @param command the command.
     * @return nft's JSON output ({@code {"nftables": [...]}}).
     * @throws NftException when the command fails, e.g. {@link NftException#isNotFound()} for no table.
     */
    String runJson(String command) throws NftException;

    /**
     * Runs one read command with terse JSON output ({@code nft -t -j}): set and map contents are left out, and
     * so libnftables does not load them; e.g. {@code list sets table inet egressd}, which then loads only the
     * table's sets, not their elements, nor any chain or rule.
     *
     * @param command the command.
     * @return nft's JSON output, without set elements.
     * @throws NftException when the command fails, e.g. {@link NftException#isNotFound()} for no table.
     */
    default String runJsonTerse(final String command) throws NftException
    {
        return runJson(command);
    }

    /**
     * Runs a script as {@link #run} would, but only checks it: nft and the kernel validate the whole
     * transaction (element clashes, missing or busy objects are caught) and nothing is committed. Used to
     * find which change of a failed transaction nft refused, because libnftables 1.0.6 cannot say which
     * line of a buffer failed.
     *
     * @param script the nft text.
     * @throws NftException when the transaction would fail.
     * @throws UnsupportedOperationException when the client cannot check (the default).
     */
    default void check(final String script) throws NftException
    {
        throw new UnsupportedOperationException(getClass().getSimpleName() + " cannot check transactions");
    }
}
