# The build of every rust-libp2p hole-punch client image (README.md; the image contract is
# impl/README.md). A version folder's Makefile sets VERSION and includes this file; the folder
# links it (rust.mk -> ../rust.mk), with the client (src -> ../src) and the .dockerignore, so
# that a snapshot of the folder holds all of it; its Dockerfile is a file of its own.
ID         := rust-$(VERSION)
IMAGE_NAME := holepunch-$(ID)

HOLEPUNCH_CACHE ?=
CACHE_DIR  ?= $(if $(HOLEPUNCH_CACHE),$(HOLEPUNCH_CACHE),$(HOME)/.cache/holepunch)
BASE_IMAGE ?= holepunch-base:bookworm
SNAPSHOT   ?=
CARGO      ?= cargo
DOCKER     ?= docker
CARGO_TARGET_DIR := $(CACHE_DIR)/build/cargo-target/$(ID)
export CARGO_BUILD_JOBS ?= 2

BIN     := build/hole-punch-client
SOURCES := Cargo.toml Cargo.lock $(wildcard src/*.rs)
# What image.yaml records as the makefile: the Makefile with this file in place of its include
# line, one file that stands alone.
FLAT_MAKEFILE := build/Makefile.flat

.PHONY: all vendor clean check-vendor
all: image.yaml

# The only target that uses the network. A no-op when vendor/ is complete.
vendor: vendor/.complete
vendor/.complete:
	rm -rf vendor vendor.tmp .cargo/config.toml
	$(CARGO) vendor --locked vendor.tmp > /dev/null
	mv vendor.tmp vendor
	mkdir -p .cargo
	printf '[source.crates-io]\nreplace-with = "vendored-sources"\n\n[source.vendored-sources]\ndirectory = "vendor"\n' > .cargo/config.toml
	touch $@

check-vendor:
	@test -f vendor/.complete -a -f .cargo/config.toml || { echo "$(ID): vendor/ missing: run 'make vendor' first (needs the crates registry)" >&2; exit 1; }

# An image.yaml whose image is no longer in the engine must not stop a rebuild.
ifneq ($(wildcard image.yaml),)
ifneq ($(MAKECMDGOALS),clean)
_OLD_ID := $(shell sed -n 's/^imageID: *//p' image.yaml)
ifneq ($(shell $(DOCKER) image inspect --format ok sha256:$(_OLD_ID) 2>/dev/null),ok)
$(shell rm -f image.yaml)
endif
endif
endif

$(BIN): $(SOURCES) | check-vendor
	mkdir -p build
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) nice $(CARGO) build --release --offline --locked
	cp $(CARGO_TARGET_DIR)/release/hole-punch-client $@.tmp
	mv $@.tmp $@

$(FLAT_MAKEFILE): Makefile rust.mk
	mkdir -p build
	sed -e '/^include rust.mk$$/{r rust.mk' -e 'd}' Makefile > $@.tmp
	mv $@.tmp $@

image.yaml: $(BIN) Dockerfile .dockerignore $(FLAT_MAKEFILE)
	$(DOCKER) build --build-arg BASE_IMAGE=$(BASE_IMAGE) --iidfile build/image-id -t $(IMAGE_NAME) .
	mkdir -p $(CACHE_DIR)/makefiles
	sha=$$(sha256sum $(FLAT_MAKEFILE) | cut -d' ' -f1) && \
	cp $(FLAT_MAKEFILE) $(CACHE_DIR)/makefiles/$$sha.makefile && \
	{ \
	  echo "imageID: $$(sed 's/^sha256://' build/image-id)"; \
	  echo "imageName: $(IMAGE_NAME)"; \
	  echo "builtAt: $$(date -u +%Y-%m-%dT%H:%M:%SZ)"; \
	  echo "arch: $$(uname -m)"; \
	  echo "snapshot: $(SNAPSHOT)"; \
	  echo "makefile: makefiles/$$sha.makefile"; \
	} > $@.tmp
	mv $@.tmp $@

clean:
	rm -rf build image.yaml image.yaml.tmp
