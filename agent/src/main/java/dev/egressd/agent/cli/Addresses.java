package dev.egressd.agent.cli;

import dev.egressd.core.model.Ipv6Address;

/** Address text in one canonical form, so the daemon's and the JDK's spellings compare equal. */
final class Addresses
{
    private Addresses()
    {
    }

    /**
     * The canonical text of an address.
     *
     * @param text an IPv4 or IPv6 address, e.g. {@code 2001:db8:0:0:0:0:0:10}.
     * @return IPv4 as is, IPv6 in RFC 5952 form ({@code 2001:db8::10}); anything unparsable as is.
     */
    static String canonical(final String text)
    {
        if (text == null || text.indexOf(':') < 0)
        {
            return text;
        }
        try
        {
            return Ipv6Address.parse(text).toString();
        }
        catch (final IllegalArgumentException e)
        {
            return text;
        }
    }
}
