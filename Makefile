# Tandem: every target installs what is missing (Debian packages), builds, and runs.
BUILD        ?= build
BUILD_TYPE   ?= RelWithDebInfo
JOBS         ?= $(shell nproc)
CMAKE_FLAGS  ?=

.PHONY: all deps build test demo bench bench-slowloris fuzz test-asan test-tsan format clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DTANDEM_TESTS=ON -DTANDEM_BENCH=ON $(CMAKE_FLAGS)
	ninja -C $(BUILD) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j 1

demo: build
	@bash scripts/demo.sh $(BUILD)/src/tandem

bench: deps
	cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_TESTS=OFF -DTANDEM_BENCH=ON
	ninja -C build-release -j $(JOBS)
	/usr/bin/python3 bench/run.py --tandem build-release/src/tandem $(BENCH_ARGS)
	@for b in build-release/bench/micro/*_bench; do [ -x $$b ] && $$b --benchmark_min_time=0.2; done; true

# 2,000 slowloris connections against Tandem, HAProxy and NGINX; a normal client's latency (~2 min).
bench-slowloris: deps
	cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_TESTS=OFF -DTANDEM_BENCH=ON
	ninja -C build-release -j $(JOBS) tandem
	/usr/bin/python3 bench/slowloris.py --tandem build-release/src/tandem $(SLOWLORIS_ARGS)

test-asan:
	$(MAKE) test BUILD=build-asan BUILD_TYPE=Debug CMAKE_FLAGS=-DTANDEM_SANITIZE=address

test-tsan:
	$(MAKE) test BUILD=build-tsan BUILD_TYPE=RelWithDebInfo CMAKE_FLAGS=-DTANDEM_SANITIZE=thread

FUZZ_SECONDS ?= 60
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_FUZZ=ON -DTANDEM_TESTS=OFF -DTANDEM_BENCH=OFF
	ninja -C build-fuzz -j $(JOBS)
	@for f in build-fuzz/tests/fuzz/fuzz_*; do \
	  name=$$(basename $$f); mkdir -p build-fuzz/corpus/$$name; \
	  echo "== $$name ($(FUZZ_SECONDS)s)"; \
	  seeds=tests/fuzz/corpus/$$name; [ -d $$seeds ] || seeds=tests/fuzz/corpus/$${name#fuzz_}; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build-fuzz/corpus/$$name $$seeds || exit 1; \
	done

format:
	clang-format -i $$(git ls-files 'src/*.cc' 'src/*.h' 'tests/*.cc' 'tests/*.h' 'bench/*.cc')

clean:
	rm -rf build build-release build-asan build-tsan build-fuzz
