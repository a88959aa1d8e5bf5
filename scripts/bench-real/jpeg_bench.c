/* bench-real driver for libjpeg-turbo (mozjpeg-sys vendor/): what an image pipeline does
 * with the library.  A deterministic photo-sized RGB image (smooth gradients, texture,
 * hard edges) is generated in memory, then
 *   encode W H REPS : compressed REPS times (baseline libjpeg-turbo profile, quality 85,
 *                     4:2:0, and quality 95 4:4:4 with optimised Huffman tables),
 *   decode W H REPS : compressed once, decompressed REPS times (full size, islow IDCT,
 *                     fancy upsampling; and at 1/2 scale).
 * Prints sizes and FNV-1a hashes of the bytes produced, so every build variant can be
 * compared exactly.  The library calls its per-component and per-block methods (colour
 * conversion, forward/inverse DCT, up/downsampling, entropy coding) through pointers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "jpeglib.h"

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static unsigned char *make_image(int w, int h) {
    unsigned char *img = malloc((size_t)w * h * 3);
    uint32_t s = 2463534242u;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            s ^= s << 13; s ^= s >> 17; s ^= s << 5;   /* xorshift: sensor noise */
            int noise = (int)(s & 15) - 8;
            int r = (x * 255) / w, g = (y * 255) / h, b = ((x + y) * 255) / (w + h);
            if (((x / 64) + (y / 48)) % 5 == 0) { r = 255 - r; b = 40; }  /* hard edges */
            int tex = ((x * x + y * 3) >> 4) & 31;                          /* texture */
            unsigned char *p = img + ((size_t)y * w + x) * 3;
            int v[3] = { r + noise + tex, g + noise, b - noise + tex / 2 };
            for (int c = 0; c < 3; c++) p[c] = (unsigned char)(v[c] < 0 ? 0 : v[c] > 255 ? 255 : v[c]);
        }
    }
    return img;
}

static unsigned char *encode(const unsigned char *img, int w, int h, int quality, int h_samp,
                             int optimize, unsigned long *size) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    unsigned char *out = NULL;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, size);
    c.image_width = w;
    c.image_height = h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_c_set_int_param(&c, JINT_COMPRESS_PROFILE, JCP_FASTEST);
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    c.comp_info[0].h_samp_factor = h_samp;
    c.comp_info[0].v_samp_factor = h_samp;
    c.optimize_coding = optimize;
    c.dct_method = JDCT_ISLOW;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(img + (size_t)c.next_scanline * w * 3);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return out;
}

static uint64_t decode(const unsigned char *jpg, unsigned long size, int scale_denom,
                       unsigned long *pixels) {
    struct jpeg_decompress_struct d;
    struct jpeg_error_mgr err;
    d.err = jpeg_std_error(&err);
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, jpg, size);
    jpeg_read_header(&d, TRUE);
    d.out_color_space = JCS_RGB;
    d.dct_method = JDCT_ISLOW;
    d.do_fancy_upsampling = TRUE;
    d.scale_num = 1;
    d.scale_denom = scale_denom;
    jpeg_start_decompress(&d);
    size_t stride = (size_t)d.output_width * d.output_components;
    unsigned char *row = malloc(stride);
    uint64_t hash = 1469598103934665603ull;
    while (d.output_scanline < d.output_height) {
        JSAMPROW r = row;
        jpeg_read_scanlines(&d, &r, 1);
        hash = fnv(hash, row, stride);
    }
    *pixels += (unsigned long)d.output_width * d.output_height;
    free(row);
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    return hash;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s encode|decode WIDTH HEIGHT REPS\n", argv[0]);
        return 2;
    }
    int w = atoi(argv[2]), h = atoi(argv[3]), reps = atoi(argv[4]);
    unsigned char *img = make_image(w, h);
    if (argv[1][0] == 'e') {
        uint64_t hash = 1469598103934665603ull;
        unsigned long total = 0;
        for (int i = 0; i < reps; i++) {
            unsigned long n1 = 0, n2 = 0;
            unsigned char *a = encode(img, w, h, 85, 2, FALSE, &n1);
            unsigned char *b = encode(img, w, h, 95, 1, TRUE, &n2);
            hash = fnv(fnv(hash, a, n1), b, n2);
            total += n1 + n2;
            free(a);
            free(b);
        }
        printf("encode %dx%d x%d: %lu bytes, fnv %016llx\n", w, h, reps, total, (unsigned long long)hash);
    } else {
        unsigned long n1 = 0, n2 = 0, pixels = 0;
        unsigned char *a = encode(img, w, h, 85, 2, FALSE, &n1);
        unsigned char *b = encode(img, w, h, 95, 1, TRUE, &n2);
        uint64_t hash = 0;
        for (int i = 0; i < reps; i++) {
            hash ^= decode(a, n1, 1, &pixels) + 3 * decode(b, n2, 1, &pixels) + 5 * decode(a, n1, 2, &pixels);
            hash *= 1099511628211ull;
        }
        printf("decode %dx%d x%d: %lu pixels, fnv %016llx\n", w, h, reps, pixels, (unsigned long long)hash);
        free(a);
        free(b);
    }
    free(img);
    return 0;
}
