package dev.egressd.agent.config;

/**
 * A setting that stops start-up. Its message is the one line the operator sees, e.g.
 * {@code bad setting destination-cap=0: must be 1..65535}.
 */
public final class BadSettingException extends Exception
{
    private final String key;

    /**
     * Creates the exception.
     *
     * @param key     the setting's name, as in the config file and without the flag's dashes.
     * @param value   the value given (null when the setting is missing).
     * @param problem what is wrong, e.g. {@code must be 1..65535}.
     */
    public BadSettingException(final String key, final String value, final String problem)
    {
        super("bad setting " + key + (value == null ? "" : "=" + value) + ": " + problem);
        this.key = key;
    }

    /**
     * The setting at fault.
     *
     * @return its name, e.g. {@code destination-cap}.
     */
    public String key()
    {
        return key;
    }
}
