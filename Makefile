# agent-procs: build, test, lint, install, bench.
# `install` never builds, so `sudo make install` does not compile as root.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
CARGO   ?= cargo
BENCH   ?= ../shared/bench
BIN     := target/release/agent-procs
DAEMON  := target/release/agent-procs-daemon
MANPAGES := man/agent-procs.1 man/agent-procs.yaml.5
COMPDIR  := target/completions
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d

all: build

# LINK=static (the default): the CLI links glibc statically, a static-pie
# executable. A CLI call then starts without the dynamic loader (no
# libc.so/libgcc_s.so to map and relocate), which is most of what a `status`
# costs beyond the round trip. The daemon (agent-procs-daemon, which the CLI
# starts from its own directory) stays dynamic: it starts once and lives long,
# and with libc's pages shared with every other process its private memory is
# only its own code and data.
# LINK=dynamic: both with glibc as a shared library, what plain `cargo build
# --release` gives, for packagers whose distribution wants that. Both need only
# the Rust toolchain and gcc (glibc's libc.a is in libc6-dev, which gcc pulls in).
LINK ?= static
ifeq ($(LINK),static)
RELEASE_BUILD = $(CARGO) rustc --release --locked --bin agent-procs -- -C target-feature=+crt-static
DAEMON_BUILD  = $(CARGO) rustc --release --locked --bin agent-procs-daemon
else ifeq ($(LINK),dynamic)
RELEASE_BUILD = $(CARGO) build --release --locked
DAEMON_BUILD  = @true
else
$(error LINK must be static or dynamic, not '$(LINK)')
endif

build:
	$(RELEASE_BUILD)
	$(DAEMON_BUILD)
	$(MAKE) --no-print-directory completions

# Shell completion scripts, written by the built binary for `install` to copy.
completions:
	@test -x $(BIN) || { echo "run 'make build' first" >&2; exit 1; }
	mkdir -p $(COMPDIR)
	$(BIN) completions bash > $(COMPDIR)/agent-procs.bash
	$(BIN) completions zsh > $(COMPDIR)/_agent-procs
	$(BIN) completions fish > $(COMPDIR)/agent-procs.fish

test:
	@command -v python3 >/dev/null 2>&1 || { echo "make test needs python3 (the tests' backends and helpers are Python scripts): apt-get install python3" >&2; exit 1; }
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) test --locked

# The black-box tests of agent-procs 0.6.3 (fetched by cargo from the crate
# registry, built once under target/compat) against our release binary; a table
# per test file, exit 1 on a failure (tests/compat/run.sh). `compat-baseline` runs
# them against 0.6.3's own binary instead.
compat: build
	CARGO="$(CARGO)" tests/compat/run.sh $(abspath $(BIN))

compat-baseline:
	CARGO="$(CARGO)" tests/compat/run.sh --baseline

# Man-page lint; .ci/run installs mandoc and runs this after `make test`.
lint-man:
	mandoc -T lint -W style $(MANPAGES)

lint: lint-man
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

# Fuzzing (fuzz/run.sh, needs cargo-fuzz): `fuzz` runs every target for FUZZ_RUNS
# executions and adds what it finds to fuzz/corpus (then `fuzz-cmin` shrinks it);
# `fuzz-smoke` runs each for FUZZ_SECS seconds, as CI does. A crash, a hang or
# too much memory fails either; the input is left in fuzz/artifacts.
FUZZ_RUNS ?= 10000000
FUZZ_SECS ?= 8
fuzz:
	CARGO="$(CARGO)" FUZZ_RUNS=$(FUZZ_RUNS) fuzz/run.sh long

fuzz-smoke:
	CARGO="$(CARGO)" FUZZ_SECS=$(FUZZ_SECS) fuzz/run.sh smoke

fuzz-cmin:
	CARGO="$(CARGO)" fuzz/run.sh cmin

install:
	@test -x $(BIN) -a -x $(DAEMON) || { echo "run 'make build' first" >&2; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5
	install -m 755 $(BIN) $(DESTDIR)$(BINDIR)/agent-procs
	install -m 755 $(DAEMON) $(DESTDIR)$(BINDIR)/agent-procs-daemon
	install -m 644 man/agent-procs.1 $(DESTDIR)$(MANDIR)/man1/agent-procs.1
	install -m 644 man/agent-procs.yaml.5 $(DESTDIR)$(MANDIR)/man5/agent-procs.yaml.5
	@if test -f $(COMPDIR)/agent-procs.bash; then \
		install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR) && \
		install -m 644 $(COMPDIR)/agent-procs.bash $(DESTDIR)$(BASHCOMPDIR)/agent-procs && \
		install -m 644 $(COMPDIR)/_agent-procs $(DESTDIR)$(ZSHCOMPDIR)/_agent-procs && \
		install -m 644 $(COMPDIR)/agent-procs.fish $(DESTDIR)$(FISHCOMPDIR)/agent-procs.fish; \
	else echo "note: no completion scripts in $(COMPDIR) ('make completions'); not installing them" >&2; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/agent-procs $(DESTDIR)$(BINDIR)/agent-procs-daemon \
		$(DESTDIR)$(MANDIR)/man1/agent-procs.1 \
		$(DESTDIR)$(MANDIR)/man5/agent-procs.yaml.5
	rm -f $(DESTDIR)$(BASHCOMPDIR)/agent-procs $(DESTDIR)$(ZSHCOMPDIR)/_agent-procs \
		$(DESTDIR)$(FISHCOMPDIR)/agent-procs.fish

# Benchmarks from the outside (see BENCHMARKS.md); QUICK=1 for a short run.
bench: build
	AP=$(BIN) $(BENCH)/run_all.sh
	python3 tests/bench/up_graph.py $(abspath $(BIN))
	python3 tests/bench/proxy_idle.py $(abspath $(BIN))
	python3 tests/bench/watch_tree.py $(abspath $(BIN))
	python3 tests/bench/load_1000.py $(abspath $(BIN))
	python3 tests/bench/control_load.py $(abspath $(BIN))
	python3 tests/bench/ui_cpu.py $(abspath $(BIN))
	python3 tests/bench/flood_status.py $(abspath $(BIN))

# A day of churn compressed into SOAK_MINUTES (default 10), watching the daemon's
# RSS and descriptors; not in CI (see tests/bench/soak.py).
soak: build
	python3 tests/bench/soak.py $(abspath $(BIN))

# A source tarball that builds and tests offline, as distro builders need: the
# tracked files of HEAD plus every crate (tests' too) vendored, and a
# .cargo/config.toml that points cargo at them.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
DIST    := agent-procs-$(VERSION)
dist:
	rm -rf target/dist && mkdir -p target/dist/$(DIST)/.cargo
	git archive --format=tar HEAD | tar -x -C target/dist/$(DIST)
	cd target/dist/$(DIST) && $(CARGO) vendor --locked --versioned-dirs vendor > .cargo/config.toml
	tar -C target/dist -czf target/dist/$(DIST).tar.gz $(DIST)
	@echo "target/dist/$(DIST).tar.gz: build with 'make build CARGO=\"cargo --offline\"' or 'cargo build --release --locked --offline'"

clean:
	$(CARGO) clean

.PHONY: all build completions test compat compat-baseline lint lint-man fuzz fuzz-smoke fuzz-cmin install uninstall bench soak dist clean
