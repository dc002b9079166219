package dev.egressd.agent.kernel.nft;

import jnr.ffi.Pointer;
import jnr.ffi.annotations.IgnoreError;

/**
 * The libnftables calls egressd makes, C names kept verbatim from {@code <nftables/libnftables.h>}
 * (nftables 1.0.6). Loaded once by {@link NftNatives}; every function used here is in the
 * {@code LIBNFTABLES_1} symbol version, so any libnftables.so.1 has them.
 *
 * <p>Errors are reported through return codes and the context's error buffer, never errno, so no call
 * saves errno ({@link IgnoreError}).
 *
 * <p><strong>Internal usage only!</strong> Use {@link NftablesClient}. The interface is public only
 * because jnr-ffi's ASM loader implements it from its own class loader, which cannot implement a
 * package-private interface ({@code IllegalAccessError}); its reflection fallback is a JVM-wide switch
 * ({@code jnr.ffi.asm.enabled}) that would slow every other binding.
 */
public interface LibNftables
{
    /** {@code libnftables.h}: {@code #define NFT_CTX_DEFAULT 0}. */
    int NFT_CTX_DEFAULT = 0;

    /** {@code libnftables.h} enum nft_ctx_output_flags: {@code NFT_CTX_OUTPUT_REVERSEDNS = (1 << 0)}. */
    int NFT_CTX_OUTPUT_REVERSEDNS = 1 << 0;
    /** {@code libnftables.h}: {@code NFT_CTX_OUTPUT_SERVICE = (1 << 1)}. */
    int NFT_CTX_OUTPUT_SERVICE = 1 << 1;
    /** {@code libnftables.h}: {@code NFT_CTX_OUTPUT_STATELESS = (1 << 2)}. */
    int NFT_CTX_OUTPUT_STATELESS = 1 << 2;
    /** {@code libnftables.h}: {@code NFT_CTX_OUTPUT_HANDLE = (1 << 3)}. */
    int NFT_CTX_OUTPUT_HANDLE = 1 << 3;
    /** {@code libnftables.h}: {@code NFT_CTX_OUTPUT_JSON = (1 << 4)} (not 1 << 5, which is ECHO). */
    int NFT_CTX_OUTPUT_JSON = 1 << 4;
    /** {@code libnftables.h}: {@code NFT_CTX_OUTPUT_ECHO = (1 << 5)}. */
    int NFT_CTX_OUTPUT_ECHO = 1 << 5;
    /** {@code libnftables.h}: {@code NFT_CTX_OUTPUT_GUID = (1 << 6)}. */
    int NFT_CTX_OUTPUT_GUID = 1 << 6;
    /** {@code libnftables.h}: {@code NFT_CTX_OUTPUT_NUMERIC_PROTO = (1 << 7)}. */
    int NFT_CTX_OUTPUT_NUMERIC_PROTO = 1 << 7;
    /** {@code libnftables.h}: {@code NFT_CTX_OUTPUT_NUMERIC_PRIO = (1 << 8)}. */
    int NFT_CTX_OUTPUT_NUMERIC_PRIO = 1 << 8;
    /** {@code libnftables.h}: {@code NFT_CTX_OUTPUT_NUMERIC_SYMBOL = (1 << 9)}. */
    int NFT_CTX_OUTPUT_NUMERIC_SYMBOL = 1 << 9;
    /** {@code libnftables.h}: {@code NFT_CTX_OUTPUT_NUMERIC_TIME = (1 << 10)}. */
    int NFT_CTX_OUTPUT_NUMERIC_TIME = 1 << 10;
    /** {@code libnftables.h}: {@code NFT_CTX_OUTPUT_NUMERIC_ALL} = PROTO | PRIO | SYMBOL | TIME. */
    int NFT_CTX_OUTPUT_NUMERIC_ALL = NFT_CTX_OUTPUT_NUMERIC_PROTO | NFT_CTX_OUTPUT_NUMERIC_PRIO
        | NFT_CTX_OUTPUT_NUMERIC_SYMBOL | NFT_CTX_OUTPUT_NUMERIC_TIME;
    /** {@code libnftables.h}: {@code NFT_CTX_OUTPUT_TERSE = (1 << 11)}. */
    int NFT_CTX_OUTPUT_TERSE = 1 << 11;

    /** {@code struct nft_ctx *nft_ctx_new(uint32_t flags);} returns NULL on failure. */
    @IgnoreError
    Pointer nft_ctx_new(int flags);

    /** {@code void nft_ctx_free(struct nft_ctx *ctx);} */
    @IgnoreError
    void nft_ctx_free(Pointer ctx);

    /** {@code unsigned int nft_ctx_output_get_flags(struct nft_ctx *ctx);} */
    @IgnoreError
    int nft_ctx_output_get_flags(Pointer ctx);

    /** {@code void nft_ctx_output_set_flags(struct nft_ctx *ctx, unsigned int flags);} */
    @IgnoreError
    void nft_ctx_output_set_flags(Pointer ctx, int flags);

    /** {@code void nft_ctx_set_dry_run(struct nft_ctx *ctx, bool dry);} (check only, nothing committed). */
    @IgnoreError
    void nft_ctx_set_dry_run(Pointer ctx, boolean dry);

    /** {@code int nft_ctx_buffer_output(struct nft_ctx *ctx);} 0 on success. */
    @IgnoreError
    int nft_ctx_buffer_output(Pointer ctx);

    /** {@code int nft_ctx_buffer_error(struct nft_ctx *ctx);} 0 on success. */
    @IgnoreError
    int nft_ctx_buffer_error(Pointer ctx);

    /**
     * {@code const char *nft_ctx_get_output_buffer(struct nft_ctx *ctx);} the output of the most recent
     * command; owned by the context, so it is copied into a Java String at once.
     */
    @IgnoreError
    String nft_ctx_get_output_buffer(Pointer ctx);

    /** {@code const char *nft_ctx_get_error_buffer(struct nft_ctx *ctx);} as above, for errors. */
    @IgnoreError
    String nft_ctx_get_error_buffer(Pointer ctx);

    /** {@code int nft_run_cmd_from_buffer(struct nft_ctx *nft, const char *buf);} 0 ok, -1 error. */
    @IgnoreError
    int nft_run_cmd_from_buffer(Pointer ctx, String buf);
}
