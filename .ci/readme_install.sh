#!/usr/bin/env bash
# The README's two commands, in both orders, as a user would run them from a checkout:
#   A: pip install . && fastnet train          B: pip install -e '.[test,cuda]' && pytest -n auto
# order 1 is A, B, then `fastnet train` again; order 2 is B, then A. Each order runs in a fresh
# virtual environment, on a fresh copy of the source tree. Both share one per-user cache
# (XDG_CACHE_HOME) made fresh for this run, so nothing from outside it is reused but pip's
# download cache: order 1 compiles the kernels into it (a build written anywhere in the
# installed package is caught there), order 2 finds them, as a second install by the same
# user would.
#
# Why: kernel builds once written into site-packages/fastnet/kernels/__pycache__ survived
# `pip uninstall`, and the leftover site-packages/fastnet/ (no __init__.py) then shadowed the
# editable install as a namespace package: "cannot import name 'Conv2D' from 'fastnet'".
#
# Usage: .ci/readme_install.sh [SOURCE_DIR]  (default: this checkout; FASTNET_DATA must name
# the MNIST directory). Exits non-zero, naming the step, when any command fails.
set -euo pipefail
src=$(cd "${1:-$(dirname "$0")/..}" && pwd)
: "${FASTNET_DATA:?set FASTNET_DATA to the directory holding the MNIST files}"
python=${PYTHON:-python3}
start=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/fastnet-readme.XXXXXX")
trap 'rm -rf "$work"' EXIT

# pip's cache follows XDG_CACHE_HOME too: keep the machine's, so wheels are not fetched again.
pip_cache=$("$python" -m pip cache dir 2>/dev/null || echo "$work/pip")
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$pip_cache}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 XDG_CACHE_HOME="$work/cache"
unset NUMBA_CACHE_DIR FASTNET_KERNEL_CACHE FASTNET_NO_CACHE PYTHONPATH

order=
step() { printf '[readme-install %s, %4d s] %s\n' "$order" "$((SECONDS - start))" "$*"; }
fail() { printf '[readme-install %s] FAILED: %s\n' "$order" "$*" >&2; exit 1; }

# A fresh copy of the tracked and untracked-but-not-ignored files: no build/, no egg-info, no
# __pycache__ from earlier runs in the checkout.
fresh_tree() {
  mkdir -p "$1"
  (cd "$src" && git ls-files -z --cached --others --exclude-standard |
     xargs -0 tar cf - --ignore-failed-read 2>/dev/null) | tar xf - -C "$1"
}

pip_install() {  # its output only when it fails
  python -m pip install -q "$@" >"$work/pip.log" 2>&1 ||
    { grep -v '^WARNING: Location' "$work/pip.log" | tail -40 >&2; fail "pip install $*"; }
}

site_fastnet() { python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }

install_regular() {
  step "pip install ."
  pip_install .
}

install_editable() {
  step "pip install -e '.[test,cuda]'"
  pip_install -e '.[test,cuda]'
  # The regular install it replaced must be gone whole: a directory left there is a namespace
  # package named fastnet.
  if [ -e "$(site_fastnet)/fastnet" ]; then
    find "$(site_fastnet)/fastnet" 2>/dev/null | head -20 >&2 || true
    fail "site-packages/fastnet/ outlived the uninstall (above): it shadows the editable install"
  fi
}

train() {
  step "fastnet train --epochs 1"
  fastnet train --epochs 1 --seed 1 || fail "fastnet train --epochs 1"
}

run_pytest() {
  # Bare pytest, as the README says (python -m pytest would put the checkout on sys.path and
  # hide a shadowed install): every test module must import, and a short selection pass.
  step "pytest --collect-only"
  pytest -q --collect-only >"$work/collect.log" 2>&1 ||
    { tail -30 "$work/collect.log" >&2; fail "pytest could not collect the tests"; }
  step "pytest -n auto (selection)"
  pytest -q -n auto -p no:cacheprovider tests/test_kernel_cache.py \
    tests/test_model.py::test_cli_train_runs || fail "pytest selection"
}

no_builds_in_install() {
  local found
  found=$(find "$(site_fastnet)/fastnet" -name '*.nbi' -o -name '*.nbc' 2>/dev/null | head -5) ||
    true
  [ -z "$found" ] || fail "kernel builds written in the installed package: $found"
}

run_order() {
  order=$1
  local dir="$work/order$1"
  fresh_tree "$dir/src"
  "$python" -m venv "$dir/venv"
  # shellcheck disable=SC1091
  . "$dir/venv/bin/activate"
  cd "$dir/src"
  step "$(python --version), fresh venv $dir/venv"
  if [ "$order" = 1 ]; then
    install_regular; train; no_builds_in_install
    install_editable; run_pytest; train
  else
    install_editable; run_pytest
    install_regular; train; no_builds_in_install
  fi
  deactivate
  cd "$src"
  step "passed"
}

run_order 1
run_order 2
echo "[readme-install] both orders passed ($((SECONDS - start)) s)"
