package dev.egressd.agent.state;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;

import java.util.List;

/**
 * What the daemon has accepted, as written to {@code state.json}: enough to rebuild the allocator exactly,
 * including every machine's (pair, block), so a restart never moves a machine.
 *
 * @param version  the file format version, {@link #VERSION}.
 * @param host     the host settings the placements were made under.
 * @param apps     apps by id, each with its pairs and its waiting queue.
 * @param machines machines by id, each with its placement.
 * @param recovered kernel elements found when the state file was missing or corrupt, kept in the kernel until
 *                  the orchestrator claims them again (so no running machine moves or leaks meanwhile).
 * @param draining  released uplink addresses still on the uplink until their drain deadline, so established
 *                  connections through them survive a restart (invariant 6). Written only when not empty, so a
 *                  file without any draining address reads the same for an egressd that predates the field; a
 *                  file without the field reads as none draining.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record DesiredState(
    @JsonProperty("version") int version,
    @JsonProperty("host") Host host,
    @JsonProperty("apps") List<App> apps,
    @JsonProperty("machines") List<MachineEntry> machines,
    @JsonProperty("recovered") List<Element> recovered,
    @JsonInclude(JsonInclude.Include.NON_EMPTY) @JsonProperty("draining") List<Draining> draining)
{
    /** The current file format. */
    public static final int VERSION = 1;

    /**
     * Normalises null lists to empty ones.
     *
     * @param version  the version.
     * @param host     the host.
     * @param apps     the apps.
     * @param machines the machines.
     * @param recovered the recovered elements.
     * @param draining  the draining uplink addresses.
     */
    @JsonCreator
    public DesiredState
    {
        draining = draining == null ? List.of() : List.copyOf(draining);
        recovered = recovered == null ? List.of() : List.copyOf(recovered);
        apps = apps == null ? List.of() : List.copyOf(apps);
        machines = machines == null ? List.of() : List.copyOf(machines);
    }

    /**
     * A state with nothing draining (the form before draining addresses were kept).
     *
     * @param version   the version.
     * @param host      the host.
     * @param apps      the apps.
     * @param machines  the machines.
     * @param recovered the recovered elements.
     */
    public DesiredState(final int version, final Host host, final List<App> apps, final List<MachineEntry> machines,
        final List<Element> recovered)
    {
        this(version, host, apps, machines, recovered, List.of());
    }

    /**
     * This state with other draining addresses.
     *
     * @param next the draining addresses.
     * @return the state.
     */
    public DesiredState withDraining(final List<Draining> next)
    {
        return new DesiredState(version, host, apps, machines, recovered, next);
    }

    /**
     * A state holding nothing.
     *
     * @param host the host settings.
     * @return the empty state.
     */
    public static DesiredState empty(final Host host)
    {
        return new DesiredState(VERSION, host, List.of(), List.of(), List.of(), List.of());
    }

    /**
     * Whether nothing at all is held.
     *
     * @return true when there are no apps and no machines.
     */
    @JsonIgnore
    public boolean isEmpty()
    {
        return apps.isEmpty() && machines.isEmpty() && recovered.isEmpty() && draining.isEmpty();
    }

    /**
     * The host settings the placements were made under.
     *
     * @param region         the region.
     * @param blockCount     blocks per pair.
     * @param blockSize      ports per block.
     * @param destinationCap the destination cap.
     */
    public record Host(
        @JsonProperty("region") String region,
        @JsonProperty("block_count") int blockCount,
        @JsonProperty("block_size") int blockSize,
        @JsonProperty("destination_cap") int destinationCap)
    {
    }

    /**
     * An app.
     *
     * @param id         the app id.
     * @param failClosed whether machines without a slot are refused traffic.
     * @param pairs      its app-scoped pairs.
     * @param waiting    its machines waiting for a slot, first come first.
     * @param pairsLost  true when a restore lost pairs of this fail-closed app and its machines stay refused until a
     *                   pair is added; else null. Written only when true, so a file without it reads as before.
     */
    public record App(
        @JsonProperty("id") String id,
        @JsonProperty("fail_closed") boolean failClosed,
        @JsonProperty("pairs") List<Pair> pairs,
        @JsonProperty("waiting") List<String> waiting,
        @JsonInclude(JsonInclude.Include.NON_NULL) @JsonProperty("pairs_lost") Boolean pairsLost)
    {
        /**
         * Normalises null lists, and a false {@code pairs_lost} to null (absent).
         *
         * @param id         the id.
         * @param failClosed fail closed.
         * @param pairs      the pairs.
         * @param waiting    the waiting queue.
         * @param pairsLost  whether a restore lost its pairs.
         */
        @JsonCreator
        public App
        {
            pairs = pairs == null ? List.of() : List.copyOf(pairs);
            waiting = waiting == null ? List.of() : List.copyOf(waiting);
            pairsLost = Boolean.TRUE.equals(pairsLost) ? Boolean.TRUE : null;
        }

        /**
         * An app whose pairs no restore lost.
         *
         * @param id         the id.
         * @param failClosed fail closed.
         * @param pairs      the pairs.
         * @param waiting    the waiting queue.
         */
        public App(final String id, final boolean failClosed, final List<Pair> pairs, final List<String> waiting)
        {
            this(id, failClosed, pairs, waiting, null);
        }

        /**
         * Whether a restore lost its pairs.
         *
         * @return true if so.
         */
        public boolean lostPairs()
        {
            return pairsLost != null;
        }
    }

    /**
     * An app-scoped pair.
     *
     * @param ipv4    its IPv4.
     * @param ipv6    its IPv6.
     * @param drained whether it takes no new machines.
     */
    public record Pair(
        @JsonProperty("ipv4") String ipv4,
        @JsonProperty("ipv6") String ipv6,
        @JsonProperty("drained") boolean drained)
    {
    }

    /**
     * A machine and exactly where it sits.
     *
     * @param id            the machine id.
     * @param app           its app.
     * @param iface         its guest interface.
     * @param ipv4          its guest IPv4, or null.
     * @param ipv6          its guest IPv6, or null.
     * @param pin           the IPv4 of the pair it is pinned to, or null.
     * @param slot          its slot on an app pair, or null.
     * @param machineScoped its machine-scoped pair, or null.
     * @param pairLost      true when a restore lost its machine-scoped pair and it stays refused until it has a pair
     *                      again (its app is fail-closed); else null. Written only when true.
     */
    @JsonInclude(JsonInclude.Include.NON_NULL)
    public record MachineEntry(
        @JsonProperty("id") String id,
        @JsonProperty("app") String app,
        @JsonProperty("interface") String iface,
        @JsonProperty("ipv4") String ipv4,
        @JsonProperty("ipv6") String ipv6,
        @JsonProperty("pin") String pin,
        @JsonProperty("slot") Slot slot,
        @JsonProperty("machine_scoped") ScopedPair machineScoped,
        @JsonProperty("pair_lost") Boolean pairLost)
    {
        /**
         * Normalises a false {@code pair_lost} to null (absent).
         *
         * @param id            the id.
         * @param app           its app.
         * @param iface         its interface.
         * @param ipv4          its guest IPv4.
         * @param ipv6          its guest IPv6.
         * @param pin           its pin.
         * @param slot          its slot.
         * @param machineScoped its machine-scoped pair.
         * @param pairLost      whether a restore lost its machine-scoped pair.
         */
        @JsonCreator
        public MachineEntry
        {
            pairLost = Boolean.TRUE.equals(pairLost) ? Boolean.TRUE : null;
        }

        /**
         * A machine whose pair no restore lost.
         *
         * @param id            the id.
         * @param app           its app.
         * @param iface         its interface.
         * @param ipv4          its guest IPv4.
         * @param ipv6          its guest IPv6.
         * @param pin           its pin.
         * @param slot          its slot.
         * @param machineScoped its machine-scoped pair.
         */
        public MachineEntry(final String id, final String app, final String iface, final String ipv4,
            final String ipv6, final String pin, final Slot slot, final ScopedPair machineScoped)
        {
            this(id, app, iface, ipv4, ipv6, pin, slot, machineScoped, null);
        }

        /**
         * Whether a restore lost its machine-scoped pair.
         *
         * @return true if so.
         */
        public boolean lostPair()
        {
            return pairLost != null;
        }
    }

    /**
     * A held slot.
     *
     * @param pair  the pair's IPv4.
     * @param block the block index.
     */
    public record Slot(@JsonProperty("pair") String pair, @JsonProperty("block") int block)
    {
    }

    /**
     * A machine-scoped pair.
     *
     * @param ipv4 its IPv4.
     * @param ipv6 its IPv6.
     */
    public record ScopedPair(@JsonProperty("ipv4") String ipv4, @JsonProperty("ipv6") String ipv6)
    {
    }

    /**
     * A kernel plan element, as data (see {@code dev.egressd.core.plan.PlanElement}).
     *
     * @param kind      the element kind, e.g. {@code snat4}.
     * @param iface     the guest interface (guests4/guests6), else null.
     * @param address   the guest address, or the uplink address (uplink4/uplink6).
     * @param egress    the egress address (snat4/snat6), else null.
     * @param firstPort the first port (snat4/snat6), else null.
     * @param lastPort  the last port (snat4/snat6), else null.
     */
    @JsonInclude(JsonInclude.Include.NON_NULL)
    public record Element(
        @JsonProperty("kind") String kind,
        @JsonProperty("interface") String iface,
        @JsonProperty("address") String address,
        @JsonProperty("egress") String egress,
        @JsonProperty("first_port") Integer firstPort,
        @JsonProperty("last_port") Integer lastPort)
    {
    }

    /**
     * A released uplink address kept until its drain deadline.
     *
     * @param element          the uplink element ({@code uplink4} or {@code uplink6}).
     * @param untilEpochMillis the wall-clock deadline, milliseconds since the epoch: a restart converts it back
     *                         to the control loop's monotonic clock.
     */
    public record Draining(
        @JsonProperty("element") Element element,
        @JsonProperty("until_epoch_millis") long untilEpochMillis)
    {
    }
}
