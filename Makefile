# The two commands that matter: `make demo` runs a lablet through its lifecycle against a
# real ccm; `make test` runs every test. Both install what they need first.
BUILD ?= build
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCCM_WERROR=ON
DEPS_GROUPS ?=
# `make test COVERAGE=1` (or `make coverage`): the same suite, once, built with coverage
# instrumentation, then the table of coverage per component; a component under its target
# fails the run (scripts/coverage.py).
ifeq ($(COVERAGE),1)
BUILD := build-coverage
CMAKE_FLAGS := -DCMAKE_BUILD_TYPE=Debug -DCCM_WERROR=ON -DCCM_COVERAGE=ON
DEPS_GROUPS := coverage
endif

.PHONY: all deps configure build test coverage demo bench compare wave fuzz test-sanitize chaos cluster package image check-package clean

all: build

deps:
	bash scripts/install-deps.sh $(DEPS_GROUPS)

configure: deps
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD)

# The run's results as JUnit, in the build directory (a failed test's output kept up to 4 MiB,
# cut in its middle beyond); after a failed run, scripts/test_failures.py prints why each test
# failed, last. The file of an earlier run is removed first, so that it is never read as this one's.
CTEST_REPORT = --output-junit ctest-results.xml --test-output-size-failed 4194304 --test-output-truncation middle

test: build
ifeq ($(COVERAGE),1)
	find $(BUILD) -name '*.gcda' -delete
endif
	rm -f $(BUILD)/ctest-results.xml
	ctest --test-dir $(BUILD) --output-on-failure -j2 --timeout 300 $(CTEST_REPORT) \
	  || { python3 scripts/test_failures.py $(BUILD)/ctest-results.xml; exit 1; }
ifeq ($(COVERAGE),1)
	python3 scripts/coverage.py $(BUILD)
endif

coverage:
	$(MAKE) test COVERAGE=1

# `make demo KEEP=1` keeps ccm, the simulators and the console running after the summary, until
# Ctrl-C (the console's address and users are printed first).
demo: build
	KEEP=$(KEEP) bash scripts/demo.sh $(BUILD)

# Three etcd members, two ccm replicas and the simulators on loopback, until Ctrl-C
# (scripts/cluster.py).
cluster: build
	python3 scripts/cluster.py $(BUILD)

bench: build
	bash bench/run.sh $(BUILD)

# ccm beside a reference under the same load, pair by pair (bench/compare.sh):
# `make compare PAIRS="sqlite etcd"` runs only those (receive, sqlite, etcd, delivery).
compare: build
	bash bench/compare.sh $(BUILD) $(PAIRS)

# An exam wave (docs/benchmarks.md): WAVE_ARGS=--small for 500 lablets on 5 workers.
wave: build
	python3 bench/wave.py $(BUILD) $(WAVE_ARGS)

# The chaos test at length: CHAOS_LABLETS lablets (default 300) for each of CHAOS_SEEDS seeds,
# every fault drawn per lablet (the suite runs one seed of 50). A failure names its seed;
# `make chaos CHAOS_SEEDS=N` replays it.
CHAOS_LABLETS ?= 300
CHAOS_SEEDS ?= 1 2 3
chaos: build
	for seed in $(CHAOS_SEEDS); do \
	  CCM_CHAOS_SEED=$$seed CCM_CHAOS_LABLETS=$(CHAOS_LABLETS) $(BUILD)/tests/ccm_integration_tests \
	    --gtest_filter='Chaos.*' || exit 1; \
	done

# libFuzzer targets (clang, with ASan and UBSan) for FUZZ_SECONDS each; see fuzz/run.sh.
fuzz:
	bash scripts/install-deps.sh fuzz
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCCM_FUZZ=ON
	cmake --build build-fuzz
	bash fuzz/run.sh build-fuzz

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer (g++).
test-sanitize: deps
	cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCCM_WERROR=ON -DCCM_SANITIZE=ON
	cmake --build build-sanitize
	rm -f build-sanitize/ctest-results.xml
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir build-sanitize --output-on-failure -j2 --timeout 600 $(CTEST_REPORT) \
	  || { python3 scripts/test_failures.py build-sanitize/ctest-results.xml; exit 1; }

# The Debian packages ccm, ccm-sims and ccm-dbgsym (CPack DEB, packaging/install.cmake), in
# $(BUILD)/packages/. Builds what they hold (ccm and the simulators, stripped), not the tests.
package: configure
	bash scripts/install-deps.sh package
	cmake --build $(BUILD) --target ccm_stripped
	cd $(BUILD) && cpack -G DEB

# The container image localhost/ccm:VERSION (buildah, FROM scratch: no registry needed) and
# its OCI archive $(BUILD)/image/ccm-image.oci.tar. IMAGE_STORAGE: buildah's global options,
# e.g. --storage-driver vfs (docs/operations.md, "Container image").
IMAGE_STORAGE ?=
image: configure
	bash scripts/install-deps.sh package
	cmake --build $(BUILD) --target ccm_stripped
	bash packaging/build-image.sh $(BUILD) $(IMAGE_STORAGE)

# Installs the packages, runs them as the service user, purges them, then builds the image and
# runs ccm from its filesystem (scripts/check-package.sh). As root; CI runs it after the suite.
check-package: package
	bash scripts/check-package.sh $(BUILD)

clean:
	rm -rf build build-coverage build-fuzz build-sanitize
