# jwtdeny — `make help` lists the targets.

PORT ?= 6390
MODULE := target/release/libjwtdeny.so
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
# The release module: x86_64 Linux, glibc 2.17 (RHEL/CentOS 7 and every distribution since).
DIST_TRIPLE := x86_64-unknown-linux-gnu
DIST_GLIBC := 2.17
DIST_SO := dist/jwtdeny-$(VERSION)-linux-x86_64.so

# Run every recipe line in bash with errors fatal, so a failing step fails the target.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

.DEFAULT_GOAL := help
.PHONY: help deps deps-test dist build run test test-cluster scenarios bench bench-instructions bench-mix fuzz soak memcheck lint fmt fmt-check clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'

# Each Debian package is installed only when the thing it provides is absent, so this is
# silent and touches nothing on a machine that has everything. libclang (with its builtin
# headers) is what bindgen needs to read redismodule.h; cmake and pkg-config are not needed
# (aws-lc-sys builds with the C compiler alone).
deps: ## Install what is missing: redis-server, redis-cli, libclang, python3, a C compiler
	@command -v cargo >/dev/null || { \
		echo "make deps: cargo not found; install the Rust toolchain (rustup) first" >&2; exit 1; }
	@missing=""; \
	command -v redis-server >/dev/null || missing+=" redis-server"; \
	command -v redis-cli >/dev/null || missing+=" redis-tools"; \
	command -v python3 >/dev/null || missing+=" python3"; \
	command -v cc >/dev/null || missing+=" gcc"; \
	command -v c++ >/dev/null || missing+=" g++"; \
	[ -e /usr/include/stdint.h ] || missing+=" libc6-dev"; \
	if [ -z "$${LIBCLANG_PATH:-}" ] && ! { compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' && \
		compgen -G '/usr/lib/llvm-*/lib/clang/*/include/stddef.h'; } >/dev/null; then \
		missing+=" libclang-dev"; fi; \
	[ -z "$$missing" ] && exit 0; \
	echo "make deps: installing$$missing"; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null; then sudo="sudo"; \
	else echo "make deps: not root and no sudo; install as root:$$missing" >&2; exit 1; fi; \
	command -v apt-get >/dev/null || { \
		echo "make deps: no apt-get; install these with your package manager:$$missing" >&2; exit 1; }; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing

deps-test: deps ## Install what only the tests need: prometheus-redis-exporter (tests/prometheus.rs)
	@command -v prometheus-redis-exporter >/dev/null || command -v redis_exporter >/dev/null || { \
		if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
		elif command -v sudo >/dev/null; then sudo="sudo"; \
		else echo "make deps-test: not root and no sudo; install prometheus-redis-exporter as root" >&2; exit 1; fi; \
		command -v apt-get >/dev/null || { \
			echo "make deps-test: no apt-get; install redis_exporter with your package manager" >&2; exit 1; }; \
		echo "make deps-test: installing prometheus-redis-exporter"; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-redis-exporter; }

build: deps ## Build the module: target/release/libjwtdeny.so
	cargo build --release

run: build ## Build, then serve redis.conf.example in the foreground (PORT=6390)
	@mkdir -p run
	@echo
	@echo "jwtdeny on 127.0.0.1:$(PORT), keys from examples/jwks.json. In another shell:"
	@echo
	@echo '  TOKEN=$$(python3 examples/mint-token.py --sub alice)'
	@echo '  redis-cli -p $(PORT) JWTDENY.CHECK "$$TOKEN"     # (integer) 1: authentic, not revoked'
	@echo '  redis-cli -p $(PORT) JWTDENY.REVOKE "$$TOKEN"    # (integer) 1: revoked now'
	@echo '  redis-cli -p $(PORT) JWTDENY.CHECK "$$TOKEN"     # (integer) 0: revoked'
	@echo '  redis-cli -p $(PORT) JWTDENY.KEYS LIST'
	@echo
	@echo "  python3 examples/mint-token.py --help   # --ttl, --nbf, --iss, --aud for other cases"
	@echo
	exec redis-server redis.conf.example --port $(PORT)

TESTED_MODULE := $(CURDIR)/$(MODULE)

test: deps deps-test ## Build, then run unit and integration tests (these start their own redis-servers)
	cargo build --release
	JWTDENY_MODULE=$(TESTED_MODULE) cargo test --profile release-tests --workspace --no-fail-fast
	JWTDENY_MODULE=$(TESTED_MODULE) bash examples/run-tests.sh
	JWTDENY_MODULE=$(TESTED_MODULE) bash tests/cluster/run.sh
	JWTDENY_MODULE=$(TESTED_MODULE) cargo test --manifest-path clients/rust/Cargo.toml
	JWTDENY_MODULE=$(TESTED_MODULE) bash tests/valkey.sh
	$(MAKE) dist
	bash tests/dist.sh $(DIST_SO) $(DIST_GLIBC)

# cargo-zigbuild links against glibc $(DIST_GLIBC)'s symbols with zig as the C toolchain: zig from
# PyPI (ziglang) and cargo-zigbuild from crates.io, both installed here when missing. zig's venv
# lives outside the repository: zig prints include paths relative to the working directory when
# they are below it, and bindgen, which runs elsewhere, would then find no libc headers.
ZIG_VENV := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/jwtdeny/zig-venv
dist: deps ## Release files in dist/: the module for any x86_64 Linux with glibc 2.17+, the npm tarball, the wheel, SHA256SUMS
	@if ! "$(ZIG_VENV)/bin/python" -m ziglang version >/dev/null 2>&1; then \
		echo "make dist: installing zig (ziglang) into $(ZIG_VENV)"; \
		python3 -m venv "$(ZIG_VENV)" && "$(ZIG_VENV)/bin/python" -m pip install -q --disable-pip-version-check ziglang; fi; \
	cargo zigbuild --help >/dev/null 2>&1 || { echo "make dist: installing cargo-zigbuild"; cargo install --locked -q cargo-zigbuild; }; \
	PATH="$(ZIG_VENV)/bin:$$PATH" cargo zigbuild --release --target $(DIST_TRIPLE).$(DIST_GLIBC)
	rm -rf dist && mkdir -p dist
	cp target/$(DIST_TRIPLE)/release/libjwtdeny.so $(DIST_SO)
	npm pack --silent ./clients/node --pack-destination dist >/dev/null
	"$(ZIG_VENV)/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps -w dist ./clients/python
	rm -rf clients/python/build clients/python/src/*.egg-info
	cd dist && sha256sum jwtdeny* > SHA256SUMS && cat SHA256SUMS
SCENARIO_SECONDS ?= 600
scenarios: build ## Random scenarios across workers × key source × cache, checked against a model, for SCENARIO_SECONDS (SCENARIO_SEED, SCENARIO_CELL replay one)
	SCENARIO_SECONDS=$(SCENARIO_SECONDS) JWTDENY_MODULE=$(TESTED_MODULE) cargo test --profile release-tests --test scenarios -- --nocapture

test-cluster: build ## Redis Cluster tests only: 3 masters + 3 replicas on loopback (redis-py, node-redis, redis-cli -c)
	bash tests/cluster/run.sh

bench: deps ## Benchmark against plain Redis in the same run (bench/README.md); BENCH_SAVE=1 writes bench/results.md, BENCH_ONLY=jwks runs one section
	bench/run.sh $(BENCH_ARGS)
	@# Sections 8 and 9 (instruction counts, the realistic mix) unless BENCH_ONLY picks others.
	@if [ -n "$${BENCH_ONLY:-}" ]; then exit 0; fi; \
	if command -v valgrind >/dev/null; then python3 bench/instructions.py --no-build; \
	else echo "bench: valgrind not found, no instruction counts (Debian: apt-get install valgrind)"; fi
	@if [ -z "$${BENCH_ONLY:-}" ]; then python3 bench/mix.py --no-build; fi

bench-instructions: deps ## Instruction counts per request under callgrind, against the targets (issue 12); BENCH_SAVE=1 writes them into bench/results.md
	python3 bench/instructions.py

bench-mix: deps ## A realistic mix: 100k tokens, Zipf requests, never-seen and revoked ones, vs EXISTS (issue 12 §3); BENCH_SAVE=1 writes it into bench/results.md
	python3 bench/mix.py

FUZZ_SECONDS ?= 60
fuzz: deps ## Fuzz the token path and the JWKS loader for FUZZ_SECONDS each (installs cargo-fuzz if missing)
	fuzz/run.sh $(FUZZ_SECONDS)

soak: build ## Long load test: 2M mixed commands from 50 clients, memory must return to its start (SOAK_OPS, SOAK_CLIENTS)
	JWTDENY_MODULE=$(TESTED_MODULE) cargo test --profile release-tests --test soak -- --ignored --nocapture

memcheck: build ## The module under valgrind memcheck: a representative workload, fails on invalid access or a leak in its frames
	bash tests/memcheck.sh

lint: ## Run clippy on all targets with warnings as errors
	cargo clippy --release --workspace --all-targets -- -D warnings

fmt: ## Format the code
	cargo fmt

fmt-check: ## Check formatting without changing files
	cargo fmt --check

clean: ## Remove build output and make run's data dir
	cargo clean
	rm -rf run
