package dev.egressd.agent.kernel;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressd.agent.kernel.nft.DataplaneConfig;
import dev.egressd.core.model.AddressDevice;
import org.junit.jupiter.api.Test;

/**
 * The fingerprint of the table's fixed part, which a start compares with the last stop's: computed once per kernel
 * (a start-up asks for it ahead of the first sync), the same as a fresh kernel of the same configuration renders,
 * and different for another configuration. Nothing is opened: a kernel opens its handles at its first call.
 */
class NftKernelFingerprintTest
{
    private static DataplaneConfig config(final String uplink)
    {
        return new DataplaneConfig("egressd", uplink, "tap-*", 1024);
    }

    @Test
    void theFingerprintIsComputedOnceAndIsTheConfigurationsOwn()
    {
        final NftKernel kernel = new NftKernel(config("uplink"), AddressDevice.UPLINK);
        final String first = kernel.tableFingerprint();
        assertThat(first).matches("[0-9a-f]{64}");
        assertThat(kernel.tableFingerprint()).isSameAs(first);
        assertThat(new NftKernel(config("uplink"), AddressDevice.UPLINK).tableFingerprint()).isEqualTo(first);
        assertThat(new NftKernel(config("uplink"), AddressDevice.LO).tableFingerprint()).isNotEqualTo(first);
        assertThat(new NftKernel(config("eth1"), AddressDevice.UPLINK).tableFingerprint()).isNotEqualTo(first);
    }
}
