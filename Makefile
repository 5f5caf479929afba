# flashsale: the two commands are `make run` and `make test`.
CARGO ?= cargo
SHELL := /bin/bash

.PHONY: run test bench migrate services build lint fmt clean

## run: build, start PostgreSQL/Redis/RabbitMQ if needed, migrate, start every service, create a demo sale
run: services build
	@scripts/run.sh

## test: everything CI runs (format, lints, unit and end-to-end tests against the real services)
test: services
	$(CARGO) fmt --all -- --check
	$(CARGO) build --workspace --all-targets
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) nextest run --workspace $(if $(CI),--profile ci,)

## bench: release build, then ceiling, race, flood, sustain, writer and redis-benchmark, and one table
##        (docs/performance.md). Not part of `make test`. Stop `make run` first: it uses the same ports.
bench: services
	$(CARGO) build --release --workspace --bins
	@scripts/bench.sh

## migrate: apply the database migrations to postgres.url
migrate: services
	$(CARGO) run --quiet --bin flashsale-migrate

## services: make sure the toolchain, PostgreSQL, Redis and RabbitMQ are installed and running
services:
	@scripts/ensure-services.sh

build:
	$(CARGO) build --workspace --bins

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
