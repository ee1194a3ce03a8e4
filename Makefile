# Two commands on a fresh machine:  `make demo`  and  `make test`  (.ci/run runs `make test`).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test setup guests venv rabbitmq bench mariadb octavia-venv test-octavia bench-octavia

## The guests are wasm32-unknown-unknown components; a fresh machine lacks that target.
setup:
	rustup target add wasm32-unknown-unknown

guests: setup
	cargo guest
	@if grep -q '^policies' .cargo/config.toml; then cargo policies; fi

## The end-to-end demo against the built-in LoxiLB simulator over the Unix-socket transport.
demo: guests
	cargo run -q -p host -- demo

venv:
	@test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -e 'provider[test]'

## RabbitMQ is started by this machine kind before each session; start it if it is down.
rabbitmq:
	@if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then \
	  echo "starting RabbitMQ"; rabbitmq-server -detached; \
	  for i in $$(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 1; done; \
	fi
	@rabbitmqctl await_startup >/dev/null 2>&1 || true

## Every test: Rust unit, component and end-to-end tests, then the Python provider and Octavia bridge tests.
test: guests rabbitmq venv
	cargo build -p host -p loxilb-sim
	cargo test --workspace
	$(PY) -m pytest provider/tests $$(test -d tests/python && echo tests/python) -q
	$(MAKE) --no-print-directory test-octavia

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
	cargo build -p host -p loxilb-sim
	$(OCTAVIA_VENV)/bin/python -m pytest tests/octavia -q -rxX -p no:cacheprovider

## Benchmarks (release build); figures are recorded in README.md.
bench: guests
	cargo bench -p host

## Latency to ACTIVE and burst rate through the real Octavia API: loxilb against Octavia's noop_driver.
bench-octavia: guests mariadb octavia-venv
	cargo build -p host -p loxilb-sim
	$(OCTAVIA_VENV)/bin/python tests/octavia/bench.py
