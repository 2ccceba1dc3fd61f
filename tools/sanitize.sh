#!/usr/bin/env bash
# Builds the extension with AddressSanitizer + UndefinedBehaviorSanitizer into a separate venv
# and runs the whole test suite under it. Any ASan/UBSan report fails the run.
#
#   bash tools/sanitize.sh [pytest args]       (about 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.san-venv
python3 -m venv "$venv"
source "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet scikit-build-core pybind11 cmeel-eigen ninja
# OpenMP off: libgomp is not instrumented and its thread pool confuses ASan's leak checker
SKBUILD_CMAKE_BUILD_TYPE=RelWithDebInfo FASTLRP_OPENMP=OFF \
SKBUILD_CMAKE_ARGS="-DCMAKE_CXX_FLAGS=-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined;-DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=address,undefined" \
  python -m pip install --quiet --no-build-isolation -Cbuild-dir=build/sanitize ".[test]"
asan=$(g++ -print-file-name=libasan.so)
ubsan=$(g++ -print-file-name=libubsan.so)
# Python itself is not instrumented: leaks of the interpreter are not ours (detect_leaks=0);
# everything else aborts the run with a report.
LD_PRELOAD="$asan:$ubsan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_init_order=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  python -m pytest -q -x -p no:cacheprovider tests "$@"
echo "sanitizers: clean"
