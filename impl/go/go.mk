# The build of every go-libp2p hole-punch client image (README.md; the image contract is
# impl/README.md). A version folder's Makefile sets IMPL_ID and includes this file; the folder
# links it (go.mk -> ../go.mk), with the client (main.go, redis.go -> ../src/) and the
# .dockerignore, so that a snapshot of the folder holds all of it; its Dockerfile is its own.
#   make vendor   go mod vendor (from the module cache first; the network only if needed)
#   make          offline host build -> docker build -> image.yaml
#   make clean    remove build/ and image.yaml, keep vendor/
IMAGE_NAME := holepunch-$(IMPL_ID)

BASE_IMAGE ?= holepunch-base:bookworm
SNAPSHOT   ?=
CACHE_DIR  ?= $(if $(HOLEPUNCH_CACHE),$(HOLEPUNCH_CACHE),$(HOME)/.cache/holepunch)
GO         ?= go
DOCKER     ?= docker

# Go's build cache is content-addressed and safe to share between versions
# and concurrent builds; keeping it in CACHE_DIR makes warm builds fast.
GO_BUILD_ENV := CGO_ENABLED=0 GOFLAGS="-mod=vendor -buildvcs=false -trimpath" \
	GOPROXY=off GOTOOLCHAIN=local GOCACHE="$(CACHE_DIR)/build/go"

SOURCES := $(wildcard *.go) go.mod go.sum
# What image.yaml records as the makefile: the Makefile with this file in place of its include
# line, one file that stands alone.
FLAT_MAKEFILE := build/Makefile.flat

.PHONY: all vendor clean FORCE
.DELETE_ON_ERROR:

all: image.yaml

vendor: vendor/modules.txt

# A vendor/ that still matches go.mod is kept (e.g. one unpacked from a snapshot with newer
# go.mod timestamps, on a machine without a module cache); else re-vendor, offline first.
vendor/modules.txt: go.mod go.sum
	@if [ -f $@ ] && GOTOOLCHAIN=local GOFLAGS=-mod=vendor GOPROXY=off $(GO) list -deps . >/dev/null 2>&1; then \
		echo "vendor/ matches go.mod"; \
	else \
		GOTOOLCHAIN=local GOFLAGS=-mod=mod GOPROXY=off $(GO) mod vendor 2>/dev/null \
			|| GOTOOLCHAIN=local GOFLAGS=-mod=mod $(GO) mod vendor; \
	fi
	@touch $@

build/hole-punch-client: $(SOURCES) vendor/modules.txt
	@mkdir -p build
	$(GO_BUILD_ENV) $(GO) build -ldflags="-s -w" -o $@ .

# Holds the base image's ID, rewritten only when it changes (a rebuilt base rebuilds this image),
# and touched when the image image.yaml names is gone from the engine (so it is built again).
build/docker-state: FORCE
	@mkdir -p build
	@set -e; \
	base=$$($(DOCKER) image inspect -f '{{.Id}}' $(BASE_IMAGE)) \
		|| { echo "base image $(BASE_IMAGE) not found: build impl/base first" >&2; exit 1; }; \
	[ "$$(cat $@ 2>/dev/null)" = "$$base" ] || echo "$$base" > $@; \
	own=$$(sed -n 's/^imageID: //p' image.yaml 2>/dev/null || true); \
	if [ -n "$$own" ] && ! $(DOCKER) image inspect "sha256:$$own" >/dev/null 2>&1; then touch $@; fi

$(FLAT_MAKEFILE): Makefile go.mk
	@mkdir -p build
	sed -e '/^include go.mk$$/{r go.mk' -e 'd}' Makefile > $@.tmp
	mv $@.tmp $@

image.yaml: build/hole-punch-client build/docker-state Dockerfile .dockerignore $(FLAT_MAKEFILE)
	$(DOCKER) build --build-arg BASE_IMAGE=$(BASE_IMAGE) --label holepunch.impl=$(IMPL_ID) \
		--iidfile build/image-id -t $(IMAGE_NAME) .
	@mkdir -p "$(CACHE_DIR)/makefiles"
	@set -e; \
	makefile_sha=$$(sha256sum $(FLAT_MAKEFILE) | cut -d' ' -f1); \
	cp $(FLAT_MAKEFILE) "$(CACHE_DIR)/makefiles/$$makefile_sha.makefile"; \
	{ \
		echo "imageID: $$(sed 's/^sha256://' build/image-id)"; \
		echo "imageName: $(IMAGE_NAME)"; \
		echo "builtAt: $$(date -u +%Y-%m-%dT%H:%M:%SZ)"; \
		echo "arch: $$(uname -m)"; \
		echo "snapshot: $(SNAPSHOT)"; \
		echo "makefile: makefiles/$$makefile_sha.makefile"; \
	} > $@.tmp; \
	mv $@.tmp $@
	@cat $@

clean:
	rm -rf build image.yaml image.yaml.tmp
