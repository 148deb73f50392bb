# Peerhost — the two commands a new user needs: `make run` and `make test`.
# Everything this project needs on a fresh Debian 12 machine is installed from here (as root, or with sudo).

SWIFT        ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
APT_PACKAGES := liburing-dev libseccomp-dev libcap-dev libffi-dev pkg-config iproute2 python3-venv
# Real BitTorrent peers the integration tests run against (Tests/peers/, BitTorrentPeers.swift):
# only `make test` and `make bench` install them, never `make run`.
TEST_APT_PACKAGES := python3-libtorrent aria2 transmission-cli opentracker mktorrent
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CONFIG       ?=
RUN_FLAGS    := $(if $(CONFIG),--config $(CONFIG),)

.PHONY: all deps test-deps build build-debug sign-dev run test soak bench fuzz clean help

all: build

help:
	@echo "make run    install what is missing, build release, start the host on the default config"
	@echo "make test   install what is missing (and test peers), build, run every test"
	@echo "make soak   like test, but only the seeding- and stream-integrity suites, many runs each (PEERHOST_SOAK=1, 20 leechers in a row)"
	@echo "make bench  benchmarks against this machine's baselines (writes bench/BENCHMARKS.md)"
	@echo "make fuzz   fuzz the manifest, config, ring-descriptor, BitTorrent bencode, metainfo, magnet, peer-wire and extension-message parsers (FUZZ_SECONDS=60 each)"
	@echo "make clean  remove build products"

# Installs the system packages that are missing; does nothing (and needs no network) when all are there.
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

deps:
	$(call install_missing,$(APT_PACKAGES))

test-deps:
	$(call install_missing,$(TEST_APT_PACKAGES))

build: deps
	$(SWIFT) build -c release
	$(MAKE) --no-print-directory sign-dev BIN=.build/release/peerhost

build-debug: deps
	$(SWIFT) build --build-tests
	$(MAKE) --no-print-directory sign-dev BIN=.build/debug/peerhost

# The host refuses unsigned plugins. Bundled and test plugins are built here, so their hash is only
# known now: sign them with this checkout's development key (made once, never committed; only
# config/peerhost.toml trusts it). Each signature lands beside the library just built
# (.build/<config>/<plugin>.manifest.sig). docs/signing.md.
DEV_KEY   := .peerhost-dev/dev
MANIFESTS := $(wildcard plugins/*/manifest.toml Tests/Plugins/*/manifest.toml)
sign-dev:
	@[ -f $(DEV_KEY).key ] || $(BIN) keygen --out $(DEV_KEY)
	@$(BIN) sign --key $(DEV_KEY).key $(MANIFESTS)

run: build
	.build/release/peerhost run $(RUN_FLAGS)

# --no-parallel: many tests block a thread for seconds (ring floods, waiting on child processes) and
# on a 2-core machine Swift Testing's pool has two threads, so in parallel they starved the async
# control-plane tests into timeouts. One at a time the whole suite takes about as long.
test: test-deps build-debug
	$(SWIFT) test --skip-build --no-parallel

# Soak: only the integrity suites, repeated until a rare failure shows (a seeding stall under send
# backpressure, reordered bytes). PEERHOST_SOAK=1 turns on the aria2 and Transmission runs
# (PEERHOST_SOAK_PEER_RUNS each, default 5); PEERHOST_SOAK_RUNS is how many libtorrent leechers one
# host seeds 64 MiB to in a row. --filter is a regular expression matched anywhere in a test's id
# (IntegrationTests.Integration/BitTorrentSeedingIntegrityTests/…): the "|" picks either suite.
soak: test-deps build-debug
	PEERHOST_SOAK=1 PEERHOST_SOAK_RUNS=20 $(SWIFT) test --skip-build --no-parallel --filter 'BitTorrentSeedingIntegrityTests|StreamIntegrityTests'

bench: deps test-deps
	bench/run.sh

# libFuzzer with coverage and AddressSanitizer, in its own build folder (every module instrumented).
# peerhost-fuzz brings its own main (libFuzzer's no-main runtime + LLVMFuzzerRunDriver): SwiftPM
# renames an executable's main, which clashes with the runtime that -sanitize=fuzzer links.
# New inputs go to .build-fuzz/corpus; fuzz/corpus (committed) is only read; crashes land in
# fuzz/crashes/ as reproducers (`.build/debug/peerhost-fuzz TARGET FILE` replays one).
# -detect_leaks=0: TOMLKit 0.6.0 leaks the C strings and key arrays its C++ bridge returns
# (CTOML Node.cpp nodeAsString, Table.cpp tableGetKeys; found by this fuzzer on the first run).
# Parsing happens once per config or manifest load, so it costs bytes, not a crash; leak reports
# would stop every run at the first input.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := manifest config descriptor bencode metainfo magnet wire extension
FUZZER_LIB    = $(firstword $(wildcard $(dir $(realpath $(SWIFT)))../lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a))
FUZZ_FLAGS    = -Xcc -DPH_FUZZ_LIBFUZZER -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,trace-cmp,pc-table \
                -Xlinker $(FUZZER_LIB) -Xlinker -lstdc++

fuzz: deps
	@test -n "$(FUZZER_LIB)" || { echo "libFuzzer runtime (libclang_rt.fuzzer_no_main) not found beside $(SWIFT)"; exit 1; }
	$(SWIFT) build --scratch-path .build-fuzz --product peerhost-fuzz $(FUZZ_FLAGS)
	@mkdir -p fuzz/crashes
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p .build-fuzz/corpus/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  ASAN_OPTIONS=detect_leaks=0 .build-fuzz/debug/peerhost-fuzz $$t -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -detect_leaks=0 -print_final_stats=1 \
	    -artifact_prefix=fuzz/crashes/$$t- .build-fuzz/corpus/$$t fuzz/corpus/$$t || exit 1; \
	done

clean:
	rm -rf .build .build-fuzz
