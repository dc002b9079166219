package dev.egressd.core.plan;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The data the kernel must hold for one host: every {@link PlanElement}, indexed by kind and key.
 *
 * <p>Immutable. Built by {@link KernelPlanner} from the desired state, or by the agent's reader from what
 * the kernel actually holds; {@link PlanDiff} turns two plans into the element changes between them.
 */
public final class KernelPlan
{
    /** The kinds in the order their changes are applied when added (uplink addresses first, see PlanDiff). */
    static final List<String> KINDS =
        List.of("uplink4", "uplink6", "static4", "static6", "guests4", "guests6", "snat4", "snat6");

    private static final KernelPlan EMPTY = new KernelPlan(Map.of());

    private final Map<String, Map<Object, PlanElement>> byKind;

    private KernelPlan(final Map<String, Map<Object, PlanElement>> byKind)
    {
        this.byKind = byKind;
    }

    /**
     * The element kinds, in the order their additions are applied (their removals go in the reverse order).
     *
     * @return the kinds.
     */
    public static List<String> kinds()
    {
        return KINDS;
    }

    /**
     * The plan holding nothing.
     *
     * @return an empty plan.
     */
    public static KernelPlan empty()
    {
        return EMPTY;
    }

    /**
     * A plan of the given elements.
     *
     * @param elements the elements; two with the same kind and key are a contradiction.
     * @return the plan.
     * @throws IllegalArgumentException if two elements share a kind and key with different data.
     */
    public static KernelPlan of(final Collection<? extends PlanElement> elements)
    {
        final Map<String, Map<Object, PlanElement>> byKind = new LinkedHashMap<>();
        for (final String kind : KINDS)
        {
            byKind.put(kind, new LinkedHashMap<>());
        }
        for (final PlanElement element : elements)
        {
            final PlanElement previous = byKind.get(element.kind()).putIfAbsent(element.key(), element);
            if (previous != null && !previous.equals(element))
            {
                throw new IllegalArgumentException("two " + element.kind() + " elements for key " + element.key()
                    + ": " + previous + " and " + element);
            }
        }
        byKind.replaceAll((kind, map) -> Collections.unmodifiableMap(map));
        return new KernelPlan(Collections.unmodifiableMap(byKind));
    }

    /**
     * The elements of one kind, keyed.
     *
     * @param kind a kind name such as {@code snat4}.
     * @return an unmodifiable map from key to element (empty if none).
     */
    public Map<Object, PlanElement> elements(final String kind)
    {
        return byKind.getOrDefault(kind, Map.of());
    }

    /**
     * Every element, kind by kind.
     *
     * @return a new list.
     */
    public List<PlanElement> elements()
    {
        final List<PlanElement> all = new ArrayList<>();
        for (final Map<Object, PlanElement> map : byKind.values())
        {
            all.addAll(map.values());
        }
        return all;
    }

    /**
     * Whether the plan holds this exact element.
     *
     * @param element an element.
     * @return true if an equal element is held.
     */
    public boolean contains(final PlanElement element)
    {
        return element.equals(elements(element.kind()).get(element.key()));
    }

    /**
     * The number of elements.
     *
     * @return the count over all kinds.
     */
    public int size()
    {
        int size = 0;
        for (final Map<Object, PlanElement> map : byKind.values())
        {
            size += map.size();
        }
        return size;
    }

    @Override
    public boolean equals(final Object o)
    {
        return o instanceof KernelPlan other && normalised().equals(other.normalised());
    }

    @Override
    public int hashCode()
    {
        return normalised().hashCode();
    }

    private Map<String, Map<Object, PlanElement>> normalised()
    {
        final Map<String, Map<Object, PlanElement>> map = new LinkedHashMap<>();
        byKind.forEach((kind, elements) ->
        {
            if (!elements.isEmpty())
            {
                map.put(kind, elements);
            }
        });
        return map;
    }

    @Override
    public String toString()
    {
        return "KernelPlan" + normalised().values();
    }
}
