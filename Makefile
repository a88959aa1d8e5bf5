# drti: `make demo` builds everything and runs the demo; `make test` runs the whole suite.
PREFIX ?= /usr/local
CARGO ?= cargo
REL := target/release

.PHONY: all setup build demo test bench bench-real bench-memory bench-osr install clean

all: build

setup:
	@bash scripts/setup.sh

build: setup
	@echo "build: cargo build --release --workspace"
	@$(CARGO) build --release --workspace
	@ln -sf drti-cc $(REL)/drti-c++

demo: build
	@bash demo/run.sh

test: build
	@echo "test: cargo test --release --workspace"
	@$(CARGO) test --release --workspace

bench: build
	@bash demo/bench.sh

# Real third-party programs (Lua, libjpeg-turbo, Box2D, zstd) from the package registries,
# four builds each, interleaved runs: see scripts/bench-real.sh. Not part of `make test`.
bench-real: build
	@bash scripts/bench-real.sh

# Peak RSS of the application with the compiler outside it, and cache-hit latency.
bench-memory: build
	@bash scripts/bench-memory.sh

# On-stack replacement: hot loops in functions entered once (plain, decorated, agent).
bench-osr: build
	@bash scripts/bench-osr.sh

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib
	install -m 755 $(REL)/drti-cc $(REL)/drti $(DESTDIR)$(PREFIX)/bin/
	ln -sf drti-cc $(DESTDIR)$(PREFIX)/bin/drti-c++
	install -m 755 $(REL)/libdrti_agent.so $(REL)/drti-jitd $(DESTDIR)$(PREFIX)/lib/

clean:
	$(CARGO) clean
