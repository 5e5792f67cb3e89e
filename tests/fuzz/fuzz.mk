# libFuzzer targets, included from the Makefile (which sets OUT, WARN and
# the protobuf rules). `make fuzz` builds them into $(OUT)/fuzz/ and runs
# each over its seed corpus, then for a bounded time; `make test` runs it.
#
# The harness and the code under test (and the protobuf code it parses
# with) are built by clang, instrumented for coverage with ASan and UBSan,
# the same in every MODE; only the libraries (protobuf-lite) are linked as
# they are. Clang 14 (Debian 12) names C++23 c++2b.

FUZZ_CXX      ?= clang++
FUZZ_SAN      := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_CXXFLAGS := -std=c++2b -g -O1 -fno-omit-frame-pointer $(FUZZ_SAN) $(WARN) -Isrc -I. -I$(OUT)/gen
# Each target runs at most this long (seconds) or this many inputs after its
# seeds, whichever comes first.
FUZZ_SECONDS  ?= 15
FUZZ_RUNS     ?= 1000000

FUZZ_TARGETS := detect frame h1 tap h2 h2conn
FUZZ_BINS    := $(addprefix $(OUT)/fuzz/,$(FUZZ_TARGETS))
fuzzobj       = $(patsubst %.cc,$(OUT)/fuzz/obj/%.o,$(1))

$(OUT)/fuzz/detect: $(call fuzzobj,tests/fuzz/detect_fuzz.cc src/proxy/detect.cc)
	$(FUZZ_CXX) $(FUZZ_SAN) -o $@ $^

$(OUT)/fuzz/h1: $(call fuzzobj,tests/fuzz/h1_fuzz.cc src/http/h1_parse.cc src/http/h1_body.cc)
	$(FUZZ_CXX) $(FUZZ_SAN) -o $@ $^

$(OUT)/fuzz/tap: $(call fuzzobj,tests/fuzz/tap_fuzz.cc src/http/h1_tap.cc src/http/h1_parse.cc src/http/h1_body.cc)
	$(FUZZ_CXX) $(FUZZ_SAN) -o $@ $^

$(OUT)/fuzz/h2: $(call fuzzobj,tests/fuzz/h2_fuzz.cc src/http/h2_tap.cc src/http/h1_parse.cc)
	$(FUZZ_CXX) $(FUZZ_SAN) -o $@ $^ -lnghttp2

$(OUT)/fuzz/h2conn: $(call fuzzobj,tests/fuzz/h2conn_fuzz.cc src/http/h2_conn.cc)
	$(FUZZ_CXX) $(FUZZ_SAN) -o $@ $^ -lnghttp2

$(OUT)/fuzz/frame: $(call fuzzobj,tests/fuzz/frame_fuzz.cc src/proto/frame.cc) \
                   $(OUT)/fuzz/obj/gen/proto/api.pb.o $(OUT)/fuzz/obj/gen/proto/registry.pb.o
	$(FUZZ_CXX) $(FUZZ_SAN) -o $@ $^ -lprotobuf-lite -pthread

# protoc's output, as in the main build: without -Werror and -Wshadow.
$(OUT)/fuzz/obj/gen/%.o: $(OUT)/gen/%.cc
	@mkdir -p $(@D)
	$(FUZZ_CXX) $(filter-out -Werror -Wshadow,$(FUZZ_CXXFLAGS)) -MMD -MP -c -o $@ $<

$(OUT)/fuzz/obj/%.o: %.cc | $(PROTO_HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -MMD -MP -c -o $@ $<

-include $(shell find $(OUT)/fuzz/obj -name '*.d' 2>/dev/null)

# One target after the other, so that their output does not interleave.
.PHONY: fuzz
fuzz: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
	  sh tests/fuzz/run.sh $(OUT)/fuzz/$$t tests/fuzz/corpus/$$t $(FUZZ_SECONDS) $(FUZZ_RUNS) || exit 1; done
