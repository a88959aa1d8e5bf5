# bench-real: Lua 5.4 as shipped in crates.io lua-src (library sources only, no Makefile).
# Compiles what lua-src's build.rs compiles (every lua-5.4.x/*.c, LUA_USE_LINUX) plus the
# lua_run.c host into $(OUT)/lua.  Variables: SRC (the lua-5.4.x directory), OUT, CC, CFLAGS,
# LDFLAGS.
HERE := $(dir $(lastword $(MAKEFILE_LIST)))
LIB_SRCS := $(wildcard $(SRC)/*.c)
OBJS := $(patsubst $(SRC)/%.c,$(OUT)/obj/%.o,$(LIB_SRCS)) $(OUT)/obj/lua_run.o
DEFS := -DLUA_USE_LINUX

$(OUT)/lua: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) -lm -ldl

$(OUT)/obj/%.o: $(SRC)/%.c | $(OUT)/obj
	$(CC) $(CFLAGS) $(DEFS) -c -o $@ $<

$(OUT)/obj/lua_run.o: $(HERE)lua_run.c | $(OUT)/obj
	$(CC) $(CFLAGS) $(DEFS) -I$(SRC) -c -o $@ $<

$(OUT)/obj:
	mkdir -p $@
