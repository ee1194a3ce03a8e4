# Two commands on a fresh machine:  `make demo`  and  `make test`  (.ci/run runs `make test`).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test setup guests venv venv-oldest rabbitmq bench release install mariadb octavia-venv test-octavia bench-octavia bench-octavia-status bench-host bench-peers reliability

## The guests are wasm32-unknown-unknown components; a fresh machine lacks that target. `cargo build` and
## `cargo test` build the components they need themselves (host/build.rs, tests/build.rs).
setup:
	rustup target add wasm32-unknown-unknown

## The policies as files (the Python suites, make install, the benches): the default one into
## target/wasm32-unknown-unknown/guest/, the others and the fixtures into target/policies/.
guests: setup
	cargo guest
	@if grep -q '^policies' .cargo/config.toml; then cargo policies; fi

## The end-to-end demo against the built-in LoxiLB simulator over the Unix-socket transport; it runs the
## policy built into the binary.
demo: setup
	cargo run -q -p host -- demo

venv:
	@test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -e 'provider[test]'

## The provider against the oldest octavia-lib it supports (Octavia 2024.1 pins 3.5.0); .venv has the newest.
OLDEST_OCTAVIA_LIB := 3.5.0
VENV_OLDEST := .venv-oldest
venv-oldest:
	@test -x $(VENV_OLDEST)/bin/python || python3 -m venv $(VENV_OLDEST)
	$(VENV_OLDEST)/bin/pip install -q 'octavia-lib==$(OLDEST_OCTAVIA_LIB)' -e 'provider[test]'

## RabbitMQ is started by this machine kind before each session; start it if it is down.
rabbitmq:
	@if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then \
	  echo "starting RabbitMQ"; rabbitmq-server -detached; \
	  for i in $$(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 1; done; \
	fi
	@rabbitmqctl await_startup >/dev/null 2>&1 || true

## Every test: Rust unit, component and end-to-end tests, then the Python provider and Octavia bridge tests
## (those load the default policy's file, hence `guests`; cargo test needs no step before it).
test: guests rabbitmq venv venv-oldest
	cargo test --workspace
	$(PY) -m pytest provider/tests $$(test -d tests/python && echo tests/python) -q
	$(VENV_OLDEST)/bin/python -m pytest provider/tests -q
	$(MAKE) --no-print-directory test-octavia

## The debug binaries the Python suites start, built as `cargo test --workspace` builds them: a plain
## `cargo build -p host` resolves other features for some dependencies and would build wasmtime and the rest a
## second time (minutes, and a gigabyte of disk).
DEBUG_BINARIES := cargo test --workspace --no-run -q

## The real Octavia API from PyPI, its driver-agent and this provider, in a venv of their own. It is rebuilt
## only when its requirements change (the stamp file is named by their hash).
OCTAVIA_VENV := .venv-octavia
OCTAVIA_REQS := tests/octavia/requirements.txt provider/pyproject.toml
octavia-venv:
	@stamp=$(OCTAVIA_VENV)/.reqs-$$(cat $(OCTAVIA_REQS) | sha256sum | cut -c1-16); \
	if [ ! -f $$stamp ]; then \
	  echo "creating $(OCTAVIA_VENV)"; rm -rf $(OCTAVIA_VENV) && python3 -m venv $(OCTAVIA_VENV) && \
	  $(OCTAVIA_VENV)/bin/pip install -q -r tests/octavia/requirements.txt -e provider && touch $$stamp; \
	fi

## MariaDB is started by this machine kind before each session; start it if it is down.
mariadb:
	@if ! (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null; then \
	  echo "starting MariaDB"; start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd; \
	  for i in $$(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null && break; sleep 1; done; \
	fi

## End-to-end with the real Octavia API, driver-agent and MariaDB (tests/octavia; see README).
test-octavia: guests mariadb octavia-venv
	$(DEBUG_BINARIES)
	$(OCTAVIA_VENV)/bin/python -m pytest tests/octavia -q -rxX -p no:cacheprovider

## Benchmarks (release build); the current figures are in README.md ("Where the figures stand"), every
## session's in docs/benchmarks.md.
bench: guests
	cargo bench -p host
	$(MAKE) --no-print-directory bench-host

## Latency to ACTIVE and burst rate through the real Octavia API: loxilb against Octavia's noop_driver.
## A release build, as operators run it (`make release`); the e2e suite runs the debug one.
bench-octavia: guests mariadb octavia-venv
	cargo build --release -p host -p loxilb-sim
	LOXILB_OCTAVIA_BIN=$(CURDIR)/target/release/loxilb-octavia LOXILB_SIM_BIN=$(CURDIR)/target/release/loxilb-sim $(OCTAVIA_VENV)/bin/python tests/octavia/bench.py

## What one status document costs Octavia's driver-agent, by how the same statuses are split into documents
## (tests/octavia/status_cost.py): the bound on a burst's rate to ACTIVE that the host does not set.
bench-octavia-status: guests mariadb octavia-venv
	cargo build --release -p host -p loxilb-sim
	LOXILB_OCTAVIA_BIN=$(CURDIR)/target/release/loxilb-octavia LOXILB_SIM_BIN=$(CURDIR)/target/release/loxilb-sim $(OCTAVIA_VENV)/bin/python tests/octavia/status_cost.py

## The earlier Python drivers' translators (octavia-loxilb-driver 1.0.3 and 1.1.0, from PyPI) beside this
## policy's, on the same tree in one run (tests/peers/translate.py).
PEERS_VENV := .venv-peers
PEERS_REQS := tests/peers/requirements.txt
bench-peers: guests
	@stamp=$(PEERS_VENV)/.reqs-$$(cat $(PEERS_REQS) | sha256sum | cut -c1-16); \
	if [ ! -f $$stamp ]; then \
	  echo "creating $(PEERS_VENV)"; rm -rf $(PEERS_VENV) && python3 -m venv $(PEERS_VENV) && \
	  $(PEERS_VENV)/bin/pip install -q -r $(PEERS_REQS) && \
	  for v in 1.0.3 1.1.0; do \
	    $(PEERS_VENV)/bin/pip install -q --no-deps --target $(PEERS_VENV)/driver-$$v octavia-loxilb-driver==$$v || exit 1; \
	  done && touch $$stamp; \
	fi
	$(PEERS_VENV)/bin/python tests/peers/translate.py

## Faults in front of LoxiLB, kill -9 of the host mid-burst and malformed provider-socket messages, through
## the real Octavia API (tests/octavia/reliability.py): prints the README's reliability figures.
reliability: guests mariadb octavia-venv
	$(DEBUG_BINARIES)
	$(OCTAVIA_VENV)/bin/python tests/octavia/reliability.py

## The host alone over its Unix socket against the simulator, with a fake driver-agent: sustained
## member updates from 8 clients, then 16 (ops/s, cast->status p50/p99, LoxiLB calls and host CPU per operation).
bench-host: guests
	cargo build --release -p host
	cargo bench -p integration-tests --bench host_socket
	BENCH_CLIENTS=16 cargo bench -p integration-tests --bench host_socket

## A release build: the host binary (with the default policy) in target/release/.
release: guests
	cargo build --release -p host

## Installs the binary, the shipped policies, the systemd unit and the sample config under DESTDIR/PREFIX.
## `make install PROFILE=debug` installs a debug build instead (the packaging test does, to skip a release build).
PREFIX ?= /usr/local
PROFILE ?= release
BINDIR := $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
install:
	@test -x target/$(PROFILE)/loxilb-octavia || { echo "target/$(PROFILE)/loxilb-octavia is missing: run make release (or make install PROFILE=debug after cargo build)"; exit 1; }
	install -D -m 0755 target/$(PROFILE)/loxilb-octavia $(DESTDIR)$(BINDIR)/loxilb-octavia
	install -D -m 0644 target/wasm32-unknown-unknown/guest/guest.wasm $(DESTDIR)$(PREFIX)/lib/loxilb-octavia/policies/l4-fullnat.wasm
	@if test -f target/policies/wasm32-unknown-unknown/guest/policy_http_fullproxy.wasm; then \
	  install -D -m 0644 target/policies/wasm32-unknown-unknown/guest/policy_http_fullproxy.wasm $(DESTDIR)$(PREFIX)/lib/loxilb-octavia/policies/http-fullproxy.wasm; fi
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's|@BINDIR@|$(BINDIR)|g' packaging/loxilb-octavia.service > $(DESTDIR)$(UNITDIR)/loxilb-octavia.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/loxilb-octavia.service
	install -D -m 0644 packaging/octavia-loxilb.conf.sample $(DESTDIR)$(PREFIX)/share/loxilb-octavia/octavia-loxilb.conf.sample
