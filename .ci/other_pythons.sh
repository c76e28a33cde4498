#!/usr/bin/env bash
# fastnet on the Python versions the README names besides CI's own 3.11 (which runs the whole
# suite). For each: a fresh copy of the source tree, a fresh virtual environment, the README's
# test install without the cuda extra (pip install -e '.[test]'; the CUDA tests need a GPU or
# run under the simulator in the main suite), a fresh kernel cache, and a short selection of
# tests that compiles kernels on that Python and checks them: the kernel cache, the MNIST
# loader, the compiled shuffle against CPython's random.shuffle, and the dense forward pass and
# activations against the NumPy reference (both dtypes). The last version named (the newest)
# also trains an MNIST epoch through the CLI, compiling the whole-epoch kernel: about half a
# minute of compiling per interpreter, paid once to keep CI within its time.
#
# The interpreters run side by side (the work is mostly compiling, one core each) with one
# Numba thread each, so that no epoch's threads spin waiting for a descheduled partner. Each
# one's output is printed whole when all are done.
#
# An interpreter that is not on this machine is reported as NOT TESTED (never as passed); it
# fails the run only when FASTNET_REQUIRE_PYTHONS=1. Looked for as pythonX.Y on PATH, then
# under $PYENV_ROOT (default ~/.pyenv)/versions.
#
# Usage: .ci/other_pythons.sh [X.Y ...]  (default: 3.10 3.12 3.13; FASTNET_DATA must name
# the MNIST directory). Exits non-zero when any interpreter found fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
: "${FASTNET_DATA:?set FASTNET_DATA to the directory holding the MNIST files}"
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.10 3.12 3.13)
start=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/fastnet-pythons.XXXXXX")
trap 'rm -rf "$work"' EXIT
pip_cache=$(python3 -m pip cache dir 2>/dev/null || echo "$work/pip")
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$pip_cache}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 NUMBA_NUM_THREADS=1
unset NUMBA_CACHE_DIR FASTNET_NO_CACHE PYTHONPATH

# The selection, by file and test id (pytest fails on an id that no longer exists).
tests=(
  tests/test_kernel_cache.py
  tests/test_datasets.py
  tests/test_network.py::test_compiled_shuffle_is_random_shuffle
  "tests/test_twins.py::test_dense[dense_forward-cpu]"
  "tests/test_twins.py::test_activations[activate-cpu]"
)
newest_also=(tests/test_model.py::test_cli_train_runs)

find_python() {  # prints the path of a working pythonX.Y, or nothing
  local want=$1 cand
  for cand in "$(command -v "python$want" 2>/dev/null || true)" \
      $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want".*/bin/"python$want" 2>/dev/null |
        sort -rV); do
    [ -n "$cand" ] || continue
    if [ "$("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
        = "$want" ]; then
      echo "$cand"
      return
    fi
  done
}

check() {  # check VERSION INTERPRETER DIR: install and test; exits non-zero on any failure
  local v=$1 py=$2 dir=$3 selection=("${tests[@]}")
  [ "$v" != "${versions[-1]}" ] || selection+=("${newest_also[@]}")
  set -e
  mkdir -p "$dir/src"
  (cd "$root" && git ls-files -z --cached --others --exclude-standard |
     xargs -0 tar cf - --ignore-failed-read 2>/dev/null) | tar xf - -C "$dir/src"
  "$py" -m venv "$dir/venv"
  # shellcheck disable=SC1091
  . "$dir/venv/bin/activate"
  cd "$dir/src"
  # Wheels only for the compiled dependencies: an interpreter they have no wheel for fails
  # here at once instead of building LLVM from source.
  # --no-compile: the .pyc files of what is imported are written on import anyway.
  if ! python -m pip install -q --no-compile --only-binary numpy,numba,llvmlite -e '.[test]' \
      >"$dir/pip.log" 2>&1; then
    grep -v '^WARNING: Location' "$dir/pip.log" | tail -30
    echo "[pythons $v] pip install -e '.[test]' failed"
    return 1
  fi
  python -c "import sys, fastnet, numba, numpy as np; print('[pythons $v] Python',
             sys.version.split()[0], 'fastnet', fastnet.__version__, 'numba',
             numba.__version__, 'numpy', np.__version__)"
  export FASTNET_KERNEL_CACHE="$dir/kernels" XDG_CACHE_HOME="$dir/cache"
  pytest -q -p no:cacheprovider "${selection[@]}" | tee "$dir/pytest.log"
  # Every test asked for ran: none skipped (MNIST not found, say).
  if grep -qE '[0-9]+ skipped' "$dir/pytest.log"; then
    echo "[pythons $v] tests were skipped: the selection must run whole"
    return 1
  fi
}

pids=() found=() missing=()
for v in "${versions[@]}"; do
  py=$(find_python "$v")
  if [ -z "$py" ]; then
    missing+=("$v")
    continue
  fi
  found+=("$v")
  # check runs in a subshell of its own, outside any if / || (where bash ignores set -e).
  ( t0=$SECONDS
    set +e
    ( check "$v" "$py" "$work/py$v" )
    rc=$?
    if [ $rc = 0 ]; then echo "[pythons $v] passed ($((SECONDS - t0)) s)"
    else echo "[pythons $v] FAILED ($((SECONDS - t0)) s)"; fi
    exit $rc
  ) >"$work/py$v.log" 2>&1 &
  pids+=($!)
done

passed=() failed=()
for i in "${!found[@]}"; do
  v=${found[$i]}
  if wait "${pids[$i]}"; then passed+=("$v"); else failed+=("$v"); fi
  cat "$work/py$v.log"
done
for v in "${missing[@]}"; do
  echo "[pythons $v] NOT TESTED: no python$v on PATH or in ${PYENV_ROOT:-$HOME/.pyenv}/versions"
done
echo "[pythons] passed: ${passed[*]:-none}; failed: ${failed[*]:-none};" \
     "not tested (no interpreter): ${missing[*]:-none} ($((SECONDS - start)) s)"
[ ${#failed[@]} -eq 0 ] || exit 1
if [ ${#missing[@]} -gt 0 ] && [ "${FASTNET_REQUIRE_PYTHONS:-0}" = 1 ]; then exit 1; fi
exit 0
