# agent-procs: build, test, lint, install, bench.
# `install` never builds, so `sudo make install` does not compile as root.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
CARGO   ?= cargo
BENCH   ?= ../shared/bench
BIN     := target/release/agent-procs
MANPAGES := man/agent-procs.1

all: build

build:
	$(CARGO) build --release --locked

test:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) test --locked

# Man-page lint; .ci/run installs mandoc and runs this after `make test`.
lint-man:
	mandoc -T lint -W warning $(MANPAGES)

lint: lint-man
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

install:
	@test -x $(BIN) || { echo "run 'make build' first" >&2; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 755 $(BIN) $(DESTDIR)$(BINDIR)/agent-procs
	install -m 644 man/agent-procs.1 $(DESTDIR)$(MANDIR)/man1/agent-procs.1

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/agent-procs $(DESTDIR)$(MANDIR)/man1/agent-procs.1

# Benchmarks from the outside (see BENCHMARKS.md); QUICK=1 for a short run.
bench: build
	AP=$(BIN) $(BENCH)/run_all.sh

clean:
	$(CARGO) clean

.PHONY: all build test lint lint-man install uninstall bench clean
