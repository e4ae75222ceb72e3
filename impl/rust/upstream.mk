# The build of rust-libp2p's own hole-punch client (hole-punching-tests) from a github source:
# the unmodified upstream tree at COMMIT, as impls.yaml's `source.build` says (impl/README.md,
# "github sources"). A version folder's Makefile sets ID and COMMIT and includes this file.
#   BUILD=dockerfile  the source's own Dockerfile (DOCKERFILE), as its authors build it, with
#                     BuildKit: needs a registry for its FROM lines (rust:1.88.0, alpine:3)
#   BUILD=offline     cargo on the host, offline from vendored crates, the same cargo command
#                     upstream's Dockerfile runs; then ./Dockerfile, on our base image, puts the
#                     binary where upstream's image has it (/usr/bin/hole-punch-client)
# The source tree is never written to: vendored crates and cargo's output live beside it, and
# cargo is pointed at them with --config on its command line.
#   vendor: the only networked step (crates.io): the tree's Cargo.lock, vendored into the cache,
#           and packed once beside the snapshot (VENDOR_PACK, a deterministic tar, zstd -19)
#           for test-pass zips; where the vendored crates are missing but the pack is there
#           (a re-run's cache is the unzipped pass), it is unpacked instead: no network
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := all

HOLEPUNCH_CACHE ?=
CACHE_DIR  ?= $(or $(HOLEPUNCH_CACHE),$(HOME)/.cache/holepunch)
BASE_IMAGE ?= holepunch-base:bookworm
SNAPSHOT   ?= snapshots/$(COMMIT).zip
BUILD      ?= offline
DOCKERFILE ?= hole-punching-tests/Dockerfile
CARGO      ?= cargo
DOCKER     ?= docker
IMAGE_NAME := holepunch-$(ID)
PACKAGE    := hole-punching-tests

WORK       := $(CACHE_DIR)/build/src/$(ID)
TREE_STAMP := $(WORK)/tree-$(COMMIT)
VENDOR     := $(CACHE_DIR)/build/cargo-vendor/$(COMMIT)
VENDOR_PACK := $(CACHE_DIR)/$(SNAPSHOT:.zip=.vendor.tar.zst)
ZSTD       ?= zstd
TARGET_DIR := $(CACHE_DIR)/build/cargo-target/$(ID)
HOST_TRIPLE = $(shell rustc -vV | sed -n 's/^host: //p')
export CARGO_BUILD_JOBS ?= 2

.PHONY: all vendor tree clean
all: image.yaml

# GitHub's archive of a commit: one top folder, <repo>-<commit>/ (git archive --prefix makes the same).
tree: $(TREE_STAMP)
$(TREE_STAMP):
	@test -f '$(CACHE_DIR)/$(SNAPSHOT)' || { echo "$(ID): $(CACHE_DIR)/$(SNAPSHOT) is missing: put GitHub's zip of $(COMMIT) there (git archive --format=zip --prefix=rust-libp2p-$(COMMIT)/ $(COMMIT))" >&2; exit 3; }
	rm -rf '$(WORK)' && mkdir -p '$(WORK)'
	cd '$(WORK)' && python3 -m zipfile -e '$(CACHE_DIR)/$(SNAPSHOT)' unpacked
	mv "$$(find '$(WORK)/unpacked' -mindepth 1 -maxdepth 1 -type d | head -n1)" '$(WORK)/tree'
	rm -rf '$(WORK)/unpacked'
	touch '$@'

vendor: $(VENDOR)/.complete $(VENDOR_PACK)
$(VENDOR)/.complete: | $(TREE_STAMP)
	rm -rf '$(VENDOR).tmp' && mkdir -p '$(dir $(VENDOR))'
	if [ -f '$(VENDOR_PACK)' ]; then \
	  mkdir '$(VENDOR).tmp' && $(ZSTD) -q -d --long=27 -c '$(VENDOR_PACK)' | tar -x -C '$(VENDOR).tmp'; \
	else \
	  nice $(CARGO) vendor --locked --manifest-path '$(WORK)/tree/Cargo.toml' '$(VENDOR).tmp' >/dev/null; \
	fi
	rm -rf '$(VENDOR)' && mv '$(VENDOR).tmp' '$(VENDOR)'
	touch '$@'

# Made once from the vendored crates (order-only: unpacking them from it does not pack again).
# Sorted names, numeric owners, mtime 0: the same crates give the same bytes.
$(VENDOR_PACK): | $(VENDOR)/.complete
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
	    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
	    --exclude=./.complete -C '$(VENDOR)' -cf - . \
	  | nice $(ZSTD) -q -19 --long=27 -T0 -f -o '$@.tmp'
	mv -f '$@.tmp' '$@'

ifeq ($(BUILD),offline)
build/hole-punch-client: $(TREE_STAMP) $(VENDOR)/.complete | $(VENDOR_PACK)
	mkdir -p build
	cd '$(WORK)/tree' && RUSTFLAGS='-C target-feature=+crt-static' nice $(CARGO) build --release \
	  --offline --locked --package $(PACKAGE) --target $(HOST_TRIPLE) --target-dir '$(TARGET_DIR)' \
	  --config 'source.crates-io.replace-with="vendored-sources"' \
	  --config 'source.vendored-sources.directory="$(VENDOR)"'
	cp '$(TARGET_DIR)/$(HOST_TRIPLE)/release/$(PACKAGE)' $@.tmp && mv $@.tmp $@

build/image-id: build/hole-punch-client Dockerfile
	$(DOCKER) build -q --build-arg BASE_IMAGE=$(BASE_IMAGE) --iidfile $@ -t $(IMAGE_NAME) . >/dev/null
else ifeq ($(BUILD),dockerfile)
build/image-id: $(TREE_STAMP)
	mkdir -p build
	DOCKER_BUILDKIT=1 $(DOCKER) build -q -f '$(WORK)/tree/$(DOCKERFILE)' --iidfile $@ -t $(IMAGE_NAME) '$(WORK)/tree' >/dev/null
else
$(error BUILD=$(BUILD): expected offline or dockerfile (impls.yaml source.build))
endif

image.yaml: build/image-id
	mkdir -p '$(CACHE_DIR)/makefiles'
	sed -e '/^include \.\.\/upstream\.mk$$/{r ../upstream.mk' -e 'd}' Makefile > build/Makefile.flat
	sha=$$(sha256sum build/Makefile.flat | cut -d' ' -f1) && \
	cp build/Makefile.flat '$(CACHE_DIR)/makefiles/'$$sha.makefile && \
	{ echo "imageID: $$(sed 's/^sha256://' build/image-id)"; echo "imageName: $(IMAGE_NAME)"; \
	  echo "builtAt: $$(date -u +%Y-%m-%dT%H:%M:%SZ)"; echo "arch: $$(uname -m)"; \
	  echo "snapshot: $(SNAPSHOT)"; echo "makefile: makefiles/$$sha.makefile"; } > $@.tmp
	mv $@.tmp $@

clean:
	rm -rf build image.yaml image.yaml.tmp
