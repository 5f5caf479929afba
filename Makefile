# flashsale: the two commands are `make run` and `make test`.
CARGO ?= cargo
SHELL := /bin/bash

.PHONY: run test test-cluster check-deploy monitor fuzz bench migrate services build lint fmt clean

## run: build, start PostgreSQL/Redis/RabbitMQ if needed, migrate, start every service, create a demo sale
run: services build
	@scripts/run.sh

## test: everything CI runs (format, lints, unit and end-to-end tests against the real services)
test: services
	@scripts/ensure-browser.sh
	$(CARGO) fmt --all -- --check
	$(CARGO) build --workspace --all-targets
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@scripts/check-deploy.sh
	$(CARGO) nextest run --workspace $(if $(CI),--profile ci,)
	@$(MAKE) --no-print-directory test-cluster

## test-cluster: the tests on real local clusters (a 3+3 Redis Cluster, a 3-node RabbitMQ cluster), each on
##               ports of its own, torn down afterwards: races, a primary killed, a broker node stopped,
##               replicas of every service (docs/scaling.md). Part of `make test`; a few minutes.
test-cluster: services
	@scripts/ensure-cluster-tools.sh
	@scripts/sweep-test-clusters.sh
	$(CARGO) nextest run --workspace --ignore-default-filter -E 'binary(cluster)' $(if $(CI),--profile ci,)


## fuzz: every fuzz target (proptest properties named fuzz::* in domain, auth, webhook, gateway and payment)
##       with FUZZ_CASES cases each (100000; `make test` runs them with 256), stopped after FUZZ_SECS (600).
##       A failure prints the minimal input and saves its seed under <crate>/proptest-regressions/.
FUZZ_CASES ?= 100000
FUZZ_SECS ?= 600
FUZZ_CRATES := -p flashsale-domain -p flashsale-auth -p flashsale-webhook -p flashsale-gateway -p flashsale-payment
fuzz:
	$(CARGO) test --no-run $(FUZZ_CRATES)
	PROPTEST_CASES=$(FUZZ_CASES) timeout $(FUZZ_SECS) $(CARGO) nextest run --profile fuzz $(FUZZ_CRATES) -E 'test(/^fuzz::/)'

## bench: release build, then ceiling, race, flood, sustain, writer and redis-benchmark, and one table
##        (docs/performance.md). Not part of `make test`. Stop `make run` first: it uses the same ports.
bench: services
	$(CARGO) build --release --workspace --bins
	@scripts/bench.sh

## migrate: apply the database migrations to postgres.url
migrate: services
	$(CARGO) run --quiet --bin flashsale-migrate

## check-deploy: the deployment files checked with real tools, no Docker engine or cluster needed
##               (scripts/check-deploy.sh: compose, Kubernetes and monitoring checks; tools in .venv-tools/)
check-deploy: services
	@scripts/check-deploy.sh

## monitor: Prometheus and the Redis/PostgreSQL exporters (Debian packages) scraping the stack of `make run`
monitor: services
	@scripts/monitor.sh

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
