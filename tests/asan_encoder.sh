#!/usr/bin/env bash
# Builds the compiled encoder (src/otel_sched/otlp/_speedups.c) with AddressSanitizer in a scratch
# copy of the working tree and runs the encoder tests against it: the equivalence tests
# (tests/test_encoding.py runs each against the Python, compiled and stock encoders) and
# tests/test_native_encoder.py, whose allocation-failure tests walk every error path that
# releases references.  Any heap overflow, use-after-free or double free aborts the run.
#
#   tests/asan_encoder.sh [extra pytest arguments]
#
# Needs gcc (or clang) with libasan, and the project's test dependencies in the current
# Python (e.g. the worktree's .venv).  Leak detection is off: CPython keeps memory alive
# to exit by design, so LeakSanitizer reports only noise; the tests check reference
# counts instead.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python}"
cc="${CC:-gcc}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

git ls-files -z | xargs -0 cp --parents -t "$scratch"
libasan="$("$cc" -print-file-name=libasan.so)"
[ -e "$libasan" ] || { echo "asan_encoder.sh: $cc has no libasan" >&2; exit 2; }
(
    # Built as pip builds it (an isolated build environment with the setuptools pyproject.toml
    # asks for), then the extension is taken out of the wheel into the scratch tree.
    cd "$scratch"
    CC="$cc" CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g -O1" LDFLAGS="-fsanitize=address" \
        "$python" -m pip wheel --quiet --no-deps --wheel-dir "$scratch/.wheel" .
    "$python" -m zipfile -e "$scratch"/.wheel/*.whl "$scratch/.wheel/unpacked"
    cp "$scratch"/.wheel/unpacked/otel_sched/otlp/_speedups*.so src/otel_sched/otlp/
)

cd "$scratch"
export PYTHONPATH="$scratch/src" PYTHONMALLOC=malloc LD_PRELOAD="$libasan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
SCRATCH="$scratch" "$python" - <<'PY'
import os
import otel_sched.otlp._speedups as m
assert m.__file__.startswith(os.environ["SCRATCH"]), f"not the AddressSanitizer build: {m.__file__}"
assert "libasan" in open("/proc/self/maps").read(), "AddressSanitizer is not loaded"
print("AddressSanitizer build:", m.__file__)
PY
"$python" -m pytest -q -p no:cacheprovider tests/test_native_encoder.py tests/test_encoding.py tests/test_native_classify.py "$@"
echo "asan_encoder.sh: ran clean under AddressSanitizer"
