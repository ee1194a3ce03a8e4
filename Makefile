# Two commands on a fresh machine:  `make demo`  and  `make test`  (.ci/run runs `make test`).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test setup guests venv rabbitmq bench

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

## Benchmarks (release build); figures are recorded in README.md.
bench: guests
	cargo bench -p host
