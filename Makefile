# SPDX-License-Identifier: GPL-2.0
#
# vpm: virtual port multiplexing, a Rust-for-Linux kernel module.
#
#   make run      build what is missing, boot the test VM, show the demo
#   make check    all tests: spec drift, host tests, VM tests on a debug kernel,
#                 benchmarks on a lean kernel
#   make bench    the benchmarks alone (lean kernel, timing assertions)
#   make          vpm.ko against KDIR (default: the cached test kernel)
#   make deps     install build and test prerequisites (idempotent, root)
#   make kernel   build the cached debug test kernel
#   make spec     regenerate netlink code from uapi/vpm.yaml
#
# KDIR=/path/to/linux builds against your own Rust-enabled kernel tree.
# Kbuild (not this file) lists the module's objects.

SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
ENV := . $(ROOT)/tools/env.sh
ifeq ($(strip $(CARGO_TARGET_DIR)),)
CARGO_TARGET_DIR := $(ROOT)/target
endif
export CARGO_TARGET_DIR
VPMCTL := $(CARGO_TARGET_DIR)/release/vpmctl

# Kernel flavor for VM runs: debug (tests) or base (benchmarks).
VPM_KFLAVOR ?= debug
export VPM_KFLAVOR

ifeq ($(origin KDIR),undefined)
KDIR_DEP := kernel
KDIR = $(shell $(ROOT)/tools/kernel.sh dir $(VPM_KFLAVOR))
else
KDIR_DEP :=
endif

# Benchmarks run on the lean kernel: TESTING.md, "timing under a debug
# kernel means nothing".  The module for it is built from a copy of the
# sources in the cache, so the debug build in the tree stays as it is.
BENCH_DIR = $(shell . $(ROOT)/tools/env.sh && echo $$VPM_CACHE)/bench-build

.PHONY: all module deps kernel kernel-dir spec check-spec vpmctl host-test \
	vm-test bench check run clean

all: module

module: $(KDIR_DEP)
	@test -f "$(KDIR)/Makefile" || { echo "vpm: KDIR=$(KDIR) is not a kernel build tree" >&2; exit 1; }
	@$(ENV); $(MAKE) -C "$(KDIR)" M=$(ROOT) LLVM= modules

deps:
	@$(ROOT)/tools/deps.sh

kernel: deps
	@$(ROOT)/tools/kernel.sh build $(VPM_KFLAVOR)

kernel-dir:
	@$(ROOT)/tools/kernel.sh dir $(VPM_KFLAVOR)

spec: deps
	@$(ROOT)/tools/ynl-gen.sh

check-spec: deps
	@$(ROOT)/tools/ynl-gen.sh --check

vpmctl:
	@$(ENV); cd $(ROOT)/tools/vpmctl && cargo build --release --quiet

host-test:
	@$(ENV); cd $(ROOT)/tools/vpmctl && cargo test --quiet
	@$(ENV); cd $(ROOT)/tests/host && cargo test --quiet
	@$(ENV); cd $(ROOT)/tests/host && RUSTFLAGS="--cfg loom" \
		CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)/loom cargo test --quiet --release flow_loom

vm-test: module vpmctl
	@$(ROOT)/tests/vm.sh check "$(KDIR)"

bench: deps vpmctl
	@$(ROOT)/tools/kernel.sh build base
	@rm -rf "$(BENCH_DIR)" && mkdir -p "$(BENCH_DIR)" && \
		cp -r $(ROOT)/Kbuild $(ROOT)/vpm_*.rs $(ROOT)/vpm_glue.[ch] $(ROOT)/gen $(ROOT)/uapi "$(BENCH_DIR)/"
	@$(ENV); kdir=$$($(ROOT)/tools/kernel.sh dir base) && \
		$(MAKE) -s -C "$$kdir" M="$(BENCH_DIR)" LLVM= modules && \
		VPM_KO="$(BENCH_DIR)/vpm.ko" $(ROOT)/tests/vm.sh bench "$$kdir"

check: deps check-spec host-test
	@$(MAKE) --no-print-directory vm-test
	@$(MAKE) --no-print-directory bench

run: deps
	@$(MAKE) --no-print-directory module vpmctl
	@$(ROOT)/tests/vm.sh run "$(KDIR)"

clean:
	@if [ -n "$(KDIR)" ] && [ -f "$(KDIR)/Makefile" ]; then \
		$(MAKE) -C "$(KDIR)" M=$(ROOT) LLVM= clean; fi
	rm -rf $(CARGO_TARGET_DIR)
