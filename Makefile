# meshd — one Makefile builds everything into build/ (no hand-run steps).
#
#   make                 release build of every binary into build/
#   make MODE=debug      -O0 build into build/debug/
#   make MODE=asan       ASan+UBSan build into build/asan/
#   make deps            installs the Debian packages the build and tests need
#   make test            deps + build + unit tests + e2e tests (needs root)
#   make demo            a small mesh in network namespaces, ending with meshd-ctl status
#   make bench           meshd side by side with HAProxy and nginx (wrk, loopback)

MODE   ?= release
BUILD_ROOT ?= build
WERROR ?= 1
CXX    ?= g++

ifeq ($(MODE),release)
  OUT       := $(BUILD_ROOT)
  MODEFLAGS := -O2 -DNDEBUG
else ifeq ($(MODE),debug)
  OUT       := $(BUILD_ROOT)/debug
  MODEFLAGS := -O0
else ifeq ($(MODE),asan)
  OUT       := $(BUILD_ROOT)/asan
  # GCC's -Wmaybe-uninitialized misfires on sanitizer-instrumented libstdc++
  # code (std::regex inside Catch2), so it is left to the release build.
  MODEFLAGS := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
               -Wno-maybe-uninitialized
else
  $(error MODE must be release, debug or asan, not '$(MODE)')
endif

VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

WARN     := -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wformat=2 -Wno-missing-field-initializers
ifeq ($(WERROR),1)
  WARN   += -Werror
endif
CXXFLAGS := -std=c++23 -g $(MODEFLAGS) $(WARN) -pthread -Isrc -I. -I$(OUT)/gen
LDFLAGS  := -pthread -Wl,--as-needed $(filter -fsanitize=%,$(MODEFLAGS))
LIBS     := -luring -lprotobuf-lite -lcares -lwolfssl -lnghttp2 -pthread

# Library code: everything under src/ except the mains in src/cmd/, plus
# the code protoc generates from src/proto/*.proto (lite runtime only).
PROTOS     := $(sort $(wildcard src/proto/*.proto))
PROTO_SRCS := $(patsubst src/proto/%.proto,$(OUT)/gen/proto/%.pb.cc,$(PROTOS))
PROTO_HDRS := $(PROTO_SRCS:.cc=.h)
LIB_SRCS   := $(shell find src -name '*.cc' -not -path 'src/cmd/*' | sort)
GEN_SRCS   := $(OUT)/gen/iptables_templates.cc
INIT_SRCS  := $(shell find init -name '*.cc' -not -name 'main.cc' 2>/dev/null | sort)
CTL_SRCS   := $(shell find ctl -name '*.cc' -not -name 'main.cc' 2>/dev/null | sort)
TEST_SRCS  := $(shell find tests/unit -name '*.cc' | sort)

obj = $(patsubst %.cc,$(OUT)/obj/%.o,$(1))
LIB_OBJS   := $(call obj,$(LIB_SRCS)) $(patsubst $(OUT)/gen/%.cc,$(OUT)/obj/gen/%.o,$(PROTO_SRCS))
INIT_OBJS  := $(call obj,$(INIT_SRCS)) $(OUT)/obj/gen/iptables_templates.o
CTL_OBJS   := $(call obj,$(CTL_SRCS))
TEST_OBJS  := $(call obj,$(TEST_SRCS))

BINS := $(OUT)/meshd $(OUT)/meshd-controller $(OUT)/meshd-init $(OUT)/meshd-ctl

.PHONY: FORCE all deps bench-deps format format-check test unit e2e demo bench clean compdb
all: $(BINS) $(OUT)/unit-tests compile_commands.json

$(OUT)/libmeshd.a: $(LIB_OBJS)
	@mkdir -p $(@D)
	ar rcs $@ $^

$(OUT)/meshd: $(call obj,src/cmd/meshd.cc) $(OUT)/libmeshd.a
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

$(OUT)/meshd-controller: $(call obj,src/cmd/meshd_controller.cc) $(OUT)/libmeshd.a
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

$(OUT)/meshd-init: $(call obj,init/main.cc) $(INIT_OBJS) $(OUT)/libmeshd.a
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

$(OUT)/meshd-ctl: $(call obj,ctl/main.cc) $(CTL_OBJS) $(INIT_OBJS) $(OUT)/libmeshd.a
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

# The controller fan-out load tool (bench/fanout.sh); built only for `make bench`.
$(OUT)/bench-fanout: $(call obj,bench/fanout.cc) $(OUT)/libmeshd.a
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

$(OUT)/unit-tests: $(TEST_OBJS) $(INIT_OBJS) $(CTL_OBJS) $(OUT)/libmeshd.a
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

# The rule templates in iptables/ are compiled into meshd-init, so that the
# binary works alone in a pod init container; --templates DIR overrides them.
$(OUT)/gen/iptables_templates.cc: $(wildcard iptables/*.rules) Makefile
	@mkdir -p $(@D)
	@{ echo '// generated from iptables/*.rules by the Makefile; do not edit'; \
	   echo '#include "init/templates.h"'; echo 'namespace meshd::init {'; \
	   echo 'const std::vector<EmbeddedTemplate>& embedded_templates() {'; \
	   echo '  static const std::vector<EmbeddedTemplate> all = {'; \
	   for f in $(sort $(wildcard iptables/*.rules)); do \
	     printf '    {"%s", R"meshd(' "$$(basename $$f)"; cat $$f; echo ')meshd"},'; done; \
	   echo '  };'; echo '  return all;'; echo '}'; echo '}  // namespace meshd::init'; } > $@

# version.h is rewritten only when the version or the commit changes, so
# that only what includes it is rebuilt.
$(OUT)/gen/version.h: FORCE
	@mkdir -p $(@D)
	@printf '#pragma once\n#define MESHD_VERSION "%s"\n#define MESHD_GIT_REV "%s"\n' '$(VERSION)' '$(GIT_REV)' > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
FORCE:

# Generated sources are kept (make would delete them as intermediates).
.SECONDARY: $(PROTO_SRCS) $(PROTO_HDRS)
$(OUT)/gen/proto/%.pb.cc $(OUT)/gen/proto/%.pb.h: src/proto/%.proto
	@mkdir -p $(@D)
	protoc --proto_path=src/proto --cpp_out=$(OUT)/gen/proto $<

# protoc's output is not ours to fix: built without -Werror and -Wshadow.
$(OUT)/obj/gen/proto/%.o: $(OUT)/gen/proto/%.cc
	@mkdir -p $(@D)
	$(CXX) $(filter-out -Werror -Wshadow,$(CXXFLAGS)) -MMD -MP -c -o $@ $<

$(OUT)/obj/gen/%.o: $(OUT)/gen/%.cc | $(OUT)/gen/version.h
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -MMD -MP -c -o $@ $<

$(OUT)/obj/%.o: %.cc | $(OUT)/gen/version.h $(PROTO_HDRS)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -MMD -MP -c -o $@ $<

-include $(shell find $(OUT)/obj -name '*.d' 2>/dev/null)

# libFuzzer targets: `make fuzz` (clang-built, in $(OUT)/fuzz/).
include tests/fuzz/fuzz.mk

# Host packages: `make deb`, `make rpm` (from packaging/, into $(OUT)/pkg/).
include packaging/packaging.mk

# compile_commands.json for editors and clang-tidy, written from the same
# flags the build uses (no extra tool needed).
compile_commands.json: Makefile $(LIB_SRCS) $(TEST_SRCS) $(INIT_SRCS) $(CTL_SRCS)
	@{ echo '['; sep=''; for f in $(LIB_SRCS) src/cmd/meshd.cc src/cmd/meshd_controller.cc init/main.cc ctl/main.cc $(INIT_SRCS) $(CTL_SRCS) $(TEST_SRCS); do \
	  printf '%s{"directory":"%s","file":"%s","command":"%s %s -c %s"}\n' "$$sep" "$(CURDIR)" "$$f" "$(CXX)" "$$(echo '$(CXXFLAGS)' | sed 's/"/\\"/g')" "$$f"; sep=','; done; echo ']'; } > $@

# Debian packages: for the build, the tests and the demo (deps), and for
# the benchmark's peers and load (bench-deps). Idempotent, and quiet when
# everything is already there. nginx and nghttp2-client are the e2e tests'
# real HTTP server (HTTP/1.1 and h2c) and HTTP/2 client.
DEB_PKGS := g++ make liburing-dev libwolfssl-dev libc-ares-dev libprotobuf-dev \
            protobuf-compiler catch2 iptables iproute2 util-linux procps \
            libtomlplusplus-dev python3 python3-pytest python3-pytest-timeout clang-format tcpdump \
            clang libclang-rt-dev curl nginx nghttp2-client libnghttp2-dev \
            lintian rpm rpmlint python3-yaml yamllint systemd
BENCH_PKGS := wrk haproxy nginx libnginx-mod-stream openssl nghttp2-client
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make: installing $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null || \
	    { echo "make: apt-get install failed (are you root?)" >&2; exit 1; }; \
	fi
endef
deps:
	$(call apt_install,$(DEB_PKGS))
bench-deps: deps
	$(call apt_install,$(BENCH_PKGS))

PYTEST := /usr/bin/python3 -m pytest -q -p no:cacheprovider

e2e: deps $(BINS)
	MESHD_BUILD=$(CURDIR)/$(OUT) $(PYTEST) tests/e2e

test: deps
	@$(MAKE) --no-print-directory all
	$(OUT)/unit-tests
	@$(MAKE) --no-print-directory fuzz
	MESHD_BUILD=$(CURDIR)/$(OUT) $(PYTEST) tests/e2e

demo: deps
	@$(MAKE) --no-print-directory $(BINS)
	MESHD_BUILD=$(CURDIR)/$(OUT) /usr/bin/python3 tests/e2e/demo.py

# Only meshd is needed: a broken meshd-init or meshd-ctl must not stop the
# benchmark (it reports a meshd that fails to build or run as such).
bench: bench-deps
	-@$(MAKE) --no-print-directory $(OUT)/meshd
	-@$(MAKE) --no-print-directory $(OUT)/meshd-controller $(OUT)/bench-fanout $(OUT)/meshd-ctl $(OUT)/meshd-init
	MESHD_BUILD=$(CURDIR)/$(OUT) sh bench/run.sh

# Formatting is clang-format's job (.clang-format); CI checks it.
CXX_FILES = $(shell git ls-files '*.cc' '*.h' 2>/dev/null)
format:
	clang-format -i $(CXX_FILES)
format-check:
	@clang-format --dry-run -Werror $(CXX_FILES) || { echo "run: make format" >&2; exit 1; }

clean:
	rm -rf build compile_commands.json
