package dev.egressd.agent.daemon;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

class SystemChecksTest
{
    @Test
    void capNetAdminIsBitTwelveOfCapEff()
    {
        assertThat(SystemChecks.hasCapability("Name:\tjava\nCapEff:\t0000000000001000\n", 12)).isTrue();
        assertThat(SystemChecks.hasCapability("CapEff:\t000001ffffffffff\n", 12)).isTrue();
        assertThat(SystemChecks.hasCapability("CapEff:\t0000000000000000\n", 12)).isFalse();
        assertThat(SystemChecks.hasCapability("CapPrm:\t0000000000001000\n", 12)).isFalse();
    }
}
