package dev.egressd.agent.kernel.nft;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

/** Pins the constants to {@code <nftables/libnftables.h>} of nftables 1.0.6. */
class LibNftablesTest
{
    @Test
    void constantsMatchTheHeader()
    {
        assertThat(LibNftables.NFT_CTX_DEFAULT).isZero();
        assertThat(LibNftables.NFT_CTX_OUTPUT_REVERSEDNS).isEqualTo(1);
        assertThat(LibNftables.NFT_CTX_OUTPUT_SERVICE).isEqualTo(2);
        assertThat(LibNftables.NFT_CTX_OUTPUT_STATELESS).isEqualTo(4);
        assertThat(LibNftables.NFT_CTX_OUTPUT_HANDLE).isEqualTo(8);
        // A public JNA binding has JSON = 1 << 5: that is ECHO.
        assertThat(LibNftables.NFT_CTX_OUTPUT_JSON).isEqualTo(16);
        assertThat(LibNftables.NFT_CTX_OUTPUT_ECHO).isEqualTo(32);
        assertThat(LibNftables.NFT_CTX_OUTPUT_GUID).isEqualTo(64);
        assertThat(LibNftables.NFT_CTX_OUTPUT_NUMERIC_PROTO).isEqualTo(128);
        assertThat(LibNftables.NFT_CTX_OUTPUT_NUMERIC_PRIO).isEqualTo(256);
        assertThat(LibNftables.NFT_CTX_OUTPUT_NUMERIC_SYMBOL).isEqualTo(512);
        assertThat(LibNftables.NFT_CTX_OUTPUT_NUMERIC_TIME).isEqualTo(1024);
        assertThat(LibNftables.NFT_CTX_OUTPUT_NUMERIC_ALL).isEqualTo(128 | 256 | 512 | 1024);
        assertThat(LibNftables.NFT_CTX_OUTPUT_TERSE).isEqualTo(2048);
    }

    @Test
    void unavailabilityIsExplained()
    {
        if (NftNatives.isAvailable())
        {
            assertThat(NftNatives.unavailabilityCause()).isNull();
        }
        else
        {
            assertThat(NftNatives.unavailabilityCause()).hasMessageContaining(NftNatives.SONAME);
        }
        assertThat(NftNatives.MISSING_MESSAGE).isEqualTo("libnftables.so.1 not found: apt-get install libnftables1");
    }

    @Test
    void exceptionClassifiesNftErrors()
    {
        final NftException exists = new NftException("add element ...",
            "Error: Could not process rule: File exists\nadd element ...\n          ^^^\n");
        assertThat(exists.isAlreadyExists()).isTrue();
        assertThat(exists.isNotFound()).isFalse();
        assertThat(exists.reason()).isEqualTo("Could not process rule: File exists");
        assertThat(exists.command()).isEqualTo("add element ...");
        assertThat(exists).hasMessage("nft failed: Error: Could not process rule: File exists");
        final NftException missing = new NftException("x", "Error: Could not process rule: No such file or directory");
        assertThat(missing.isNotFound()).isTrue();
        assertThat(new NftException("x", "Error: Could not process rule: Device or resource busy").isBusy()).isTrue();
    }
}
