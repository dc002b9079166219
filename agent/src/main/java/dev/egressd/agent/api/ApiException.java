package dev.egressd.agent.api;

/** A request the API answers with an error body {@code {"error": {"code", "message", "field"}}}. */
final class ApiException extends Exception
{
    final int status;
    final String code;
    final String field;

    ApiException(final int status, final String code, final String field, final String message)
    {
        super(message, null, false, false);
        this.status = status;
        this.code = code;
        this.field = field;
    }
}
