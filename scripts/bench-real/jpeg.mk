# bench-real: libjpeg-turbo as bundled in crates.io mozjpeg-sys (vendor/, no CMakeLists.txt in
# the crate).  Compiles the library files mozjpeg-sys's build.rs compiles (without SIMD:
# jsimd_none.c) with the same configuration headers (jpeg-config/), and links the
# jpeg_bench.c driver into $(OUT)/jpeg_bench.  Variables: SRC (vendor dir), OUT, CC, CFLAGS,
# LDFLAGS.
HERE := $(dir $(lastword $(MAKEFILE_LIST)))
LIB := jcapimin jcapistd jccoefct jccolor jcdctmgr jcext jchuff jcinit jcmainct jcmarker \
       jcmaster jcomapi jcparam jcphuff jcprepct jcsample jctrans jdapimin jdapistd jdatadst \
       jdatasrc jdcoefct jdcolor jddctmgr jdhuff jdinput jdmainct jdmarker jdmaster jdmerge \
       jdphuff jdpostct jdsample jdtrans jerror jfdctflt jfdctfst jfdctint jidctflt jidctfst \
       jidctint jidctred jmemmgr jmemnobs jquant1 jquant2 jutils jsimd_none
OBJS := $(patsubst %,$(OUT)/obj/%.o,$(LIB))
INC := -I$(HERE)jpeg-config -I$(SRC)

$(OUT)/jpeg_bench: $(OUT)/obj/jpeg_bench.o $(OUT)/libjpeg.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lm

$(OUT)/libjpeg.a: $(OBJS)
	rm -f $@ && ar rcs $@ $^

$(OUT)/obj/%.o: $(SRC)/%.c | $(OUT)/obj
	$(CC) $(CFLAGS) $(INC) -c -o $@ $<

$(OUT)/obj/jpeg_bench.o: $(HERE)jpeg_bench.c | $(OUT)/obj
	$(CC) $(CFLAGS) $(INC) -c -o $@ $<

$(OUT)/obj:
	mkdir -p $@
