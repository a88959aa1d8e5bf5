/* bench-real: internal libjpeg-turbo configuration (as mozjpeg-sys's build.rs writes it). */
#define BUILD "bench-real"
#define INLINE inline __attribute__((always_inline))
#define HIDDEN __attribute__((visibility("hidden")))
#define HAVE_THREAD_LOCAL
#define THREAD_LOCAL __thread
#define SIZEOF_SIZE_T 8
#define HAVE_BUILTIN_CTZL 1
#define FALLTHROUGH
#define PACKAGE_NAME "mozjpeg"
#define VERSION "bench-real"
