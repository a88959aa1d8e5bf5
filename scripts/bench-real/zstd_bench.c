/* bench-real driver for zstd (crates.io zstd-sys, zstd/lib built with zstd's own CMake):
 * what a log archiver or package builder does.  A deterministic corpus of SIZE MiB (log
 * lines with timestamps, ids, repeated vocabulary, some base64-like noise) is compressed
 * with the streaming API at LEVEL in 128 KiB input chunks, then decompressed and compared.
 * zstd selects its block compressor (fast, dfast, greedy, lazy, btopt...) per level through
 * a function pointer, and its match finders through tables of them.
 * usage: zstd_bench LEVEL SIZE_MIB.  Prints sizes and an FNV-1a hash of the frame. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "zstd.h"

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ull; }
    return h;
}

static size_t make_corpus(unsigned char *buf, size_t size) {
    static const char *words[] = {"GET", "POST", "/api/v1/users", "/static/app.js", "200", "404",
        "user", "session", "timeout", "connected", "cache", "miss", "hit", "worker", "queue",
        "retry", "upstream", "latency_ms", "bytes", "ok", "error", "warn", "info", "debug"};
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t s = 88172645u;
    size_t n = 0;
    unsigned long t = 1700000000;
    while (n + 256 < size) {
        s ^= s << 13; s ^= s >> 17; s ^= s << 5;
        t += s % 3;
        n += (size_t)sprintf((char *)buf + n, "%lu.%03u [%s] id=%u ", t, s % 1000, words[19 + s % 5], (s >> 8) % 5000);
        int nw = 3 + (int)(s >> 20) % 8;
        for (int i = 0; i < nw; i++) {
            s ^= s << 13; s ^= s >> 17; s ^= s << 5;
            n += (size_t)sprintf((char *)buf + n, "%s ", words[s % 19]);
        }
        if (s % 4 == 0) {  /* a token: incompressible */
            for (int i = 0; i < 22; i++) { s ^= s << 13; s ^= s >> 17; s ^= s << 5; buf[n++] = (unsigned char)b64[s & 63]; }
        }
        buf[n++] = '\n';
    }
    return n;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s LEVEL SIZE_MIB\n", argv[0]);
        return 2;
    }
    int level = atoi(argv[1]);
    size_t cap = (size_t)atoi(argv[2]) << 20;
    unsigned char *src = malloc(cap);
    size_t n = make_corpus(src, cap);
    size_t bound = ZSTD_compressBound(n);
    unsigned char *dst = malloc(bound), *back = malloc(n);

    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_outBuffer out = {dst, bound, 0};
    const size_t chunk = 128 << 10;
    for (size_t off = 0; off < n; off += chunk) {
        size_t len = n - off < chunk ? n - off : chunk;
        ZSTD_inBuffer in = {src + off, len, 0};
        ZSTD_EndDirective mode = off + len == n ? ZSTD_e_end : ZSTD_e_continue;
        size_t r;
        do {
            r = ZSTD_compressStream2(cctx, &out, &in, mode);
            if (ZSTD_isError(r)) { fprintf(stderr, "compress: %s\n", ZSTD_getErrorName(r)); return 1; }
        } while (mode == ZSTD_e_end ? r != 0 : in.pos < in.size);
    }
    ZSTD_freeCCtx(cctx);

    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    size_t got = ZSTD_decompressDCtx(dctx, back, n, dst, out.pos);
    if (ZSTD_isError(got)) { fprintf(stderr, "decompress: %s\n", ZSTD_getErrorName(got)); return 1; }
    ZSTD_freeDCtx(dctx);
    int same = got == n && memcmp(src, back, n) == 0;
    printf("zstd -%d: %zu -> %zu bytes, round trip %s, fnv %016llx\n", level, n, out.pos,
           same ? "ok" : "DIFFERENT", (unsigned long long)fnv(1469598103934665603ull, dst, out.pos));
    free(src); free(dst); free(back);
    return same ? 0 : 1;
}
