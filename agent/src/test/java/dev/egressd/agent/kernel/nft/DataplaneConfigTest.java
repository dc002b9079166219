package dev.egressd.agent.kernel.nft;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatIllegalArgumentException;

class DataplaneConfigTest
{
    @Test
    void defaults()
    {
        final DataplaneConfig config = DataplaneConfig.defaults("eth0");
        assertThat(config).isEqualTo(new DataplaneConfig("egressd", "eth0", "tap-*", 1024));
    }

    @Test
    void badFieldsAreNamed()
    {
        assertThatIllegalArgumentException().isThrownBy(() -> new DataplaneConfig("1bad", "eth0", "tap-*", 1))
            .withMessageStartingWith("table:");
        assertThatIllegalArgumentException().isThrownBy(() -> new DataplaneConfig("t", "eth0\"x", "tap-*", 1))
            .withMessageStartingWith("uplink:");
        assertThatIllegalArgumentException().isThrownBy(() -> new DataplaneConfig("t", "a234567890123456", "tap-*", 1))
            .withMessageStartingWith("uplink:");
        assertThatIllegalArgumentException().isThrownBy(() -> new DataplaneConfig("t", "eth0", "t*p-*", 1))
            .withMessageStartingWith("guestInterfacePattern:");
        assertThatIllegalArgumentException().isThrownBy(() -> new DataplaneConfig("t", "eth0", "*", 1))
            .withMessageStartingWith("guestInterfacePattern:");
        assertThatIllegalArgumentException().isThrownBy(() -> new DataplaneConfig("t", "tap-up", "tap-*", 1))
            .withMessageStartingWith("uplink:");
        assertThatIllegalArgumentException().isThrownBy(() -> new DataplaneConfig("t", "eth0", "tap-*", 0))
            .withMessageStartingWith("destinationCap:");
    }

    @Test
    void fifteenCharacterNamesAreFine()
    {
        assertThat(new DataplaneConfig("t", "a23456789012345", "b23456789012345", 1).uplink()).hasSize(15);
        assertThat(new DataplaneConfig("t", "eth0", "b23456789012345*", 1).guestInterfacePattern()).hasSize(16);
    }
}
