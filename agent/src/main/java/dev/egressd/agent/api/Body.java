package dev.egressd.agent.api;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.Iterator;
import java.util.Set;

/** A request's JSON object, read strictly: malformed JSON, unknown fields and wrong types are 400. */
final class Body
{
    static final ObjectMapper MAPPER = new ObjectMapper()
        .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
        .enable(DeserializationFeature.FAIL_ON_READING_DUP_TREE_KEY);

    private final ObjectNode node;

    private Body(final ObjectNode node)
    {
        this.node = node;
    }

    /**
     * Parses a body.
     *
     * @param bytes   the body; empty means {@code {}}.
     * @param allowed the fields the route accepts.
     * @return the body.
     * @throws ApiException 400 if it is not a JSON object of allowed fields.
     */
    static Body parse(final byte[] bytes, final Set<String> allowed) throws ApiException
    {
        if (bytes.length == 0)
        {
            return new Body(MAPPER.createObjectNode());
        }
        final JsonNode tree;
        try
        {
            tree = MAPPER.readTree(bytes);
        }
        catch (final JsonProcessingException e)
        {
            throw new ApiException(400, "malformed_json", null, "the body is not valid JSON: " + e.getOriginalMessage());
        }
        catch (final java.io.IOException e)
        {
            throw new ApiException(400, "malformed_json", null, "the body could not be read: " + e.getMessage());
        }
        if (tree == null || tree.isMissingNode())
        {
            return new Body(MAPPER.createObjectNode());
        }
        if (!tree.isObject())
        {
            throw new ApiException(400, "malformed_json", null, "the body must be a JSON object");
        }
        final Iterator<String> names = tree.fieldNames();
        while (names.hasNext())
        {
            final String name = names.next();
            if (!allowed.contains(name))
            {
                throw new ApiException(400, "unknown_field", name, "unknown field " + name + (allowed.isEmpty()
                    ? " (this request takes no body: send none or {})"
                    : " (this request takes " + String.join(", ", allowed.stream().sorted().toList()) + ")"));
            }
        }
        return new Body((ObjectNode)tree);
    }

    /**
     * A string field.
     *
     * @param name     the field.
     * @param required whether it must be present and non-null.
     * @return the value, or null when absent or null and not required.
     * @throws ApiException 400 when missing or not a string.
     */
    String string(final String name, final boolean required) throws ApiException
    {
        final JsonNode value = node.get(name);
        if (value == null || value.isNull())
        {
            if (required)
            {
                throw new ApiException(400, "missing_field", name, "field " + name + " is required");
            }
            return null;
        }
        if (!value.isTextual())
        {
            throw new ApiException(400, "wrong_type", name, "field " + name + " must be a string, got "
                + value.getNodeType().name().toLowerCase(java.util.Locale.ROOT));
        }
        return value.textValue();
    }

    /**
     * A boolean field.
     *
     * @param name the field.
     * @return the value, or null when absent.
     * @throws ApiException 400 when not a boolean.
     */
    Boolean bool(final String name) throws ApiException
    {
        final JsonNode value = node.get(name);
        if (value == null || value.isNull())
        {
            return null;
        }
        if (!value.isBoolean())
        {
            throw new ApiException(400, "wrong_type", name, "field " + name + " must be true or false, got "
                + value.getNodeType().name().toLowerCase(java.util.Locale.ROOT));
        }
        return value.booleanValue();
    }
}
