#!/usr/bin/env bash
# CI: the wheel installs anywhere. Build the sdist and the wheel, check their metadata, install
# the wheel alone (its base dependencies, no extras) into a fresh venv, and use it from a
# directory outside the checkout: whatever the installed package needs must be in the wheel.
#
#   .ci/wheel-smoke.sh            (PYTHON=python3.12 .ci/wheel-smoke.sh for another interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
python=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off PYTHONDONTWRITEBYTECODE=1

work=$(mktemp -d "${TMPDIR:-/tmp}/greenprec-wheel-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
step() { echo "CI: wheel-smoke: $*"; }
fail() { echo "CI: wheel-smoke: FAILED: $*" >&2; exit 1; }
# Every command is bounded: a hung build, install or command fails the job instead of stalling it.
bounded() { local seconds=$1; shift; timeout --kill-after=10 "$seconds" "$@"; }

step "building the sdist and the wheel into $work/dist"
bounded 600 "$python" -m build --sdist --wheel --outdir "$work/dist" . >"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log" >&2; fail "python -m build"; }
shopt -s nullglob
wheels=("$work"/dist/*.whl)
sdists=("$work"/dist/*.tar.gz)
shopt -u nullglob
[ "${#wheels[@]}" -eq 1 ] && [ "${#sdists[@]}" -eq 1 ] \
    || fail "expected one wheel and one sdist, got: $(ls "$work/dist")"
wheel=${wheels[0]}
step "built $(basename "$wheel") and $(basename "${sdists[0]}")"

step "twine check --strict"
bounded 120 "$python" -m twine check --strict "$wheel" "${sdists[0]}"

# The wheel holds the package and nothing of the checkout: no tests, no docs, no fixtures.
step "checking what the wheel holds"
"$python" - "$wheel" <<'PY' || fail "the wheel's contents"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
stray = [n for n in names if not n.startswith(("greenprec/", "greenprec-"))]
assert not stray, f"files outside the package: {stray[:10]}"
for needed in ("greenprec/py.typed", "greenprec/testing/__init__.py", "greenprec/testing/plugin.py"):
    assert needed in names, f"{needed} is missing from the wheel"
print(f"CI: wheel-smoke: {len(names)} files, all under greenprec/ and its dist-info")
PY

step "installing the wheel alone into a fresh venv"
bounded 120 "$python" -m venv "$work/venv"
venv_python="$work/venv/bin/python"
[ -x "$venv_python" ] || venv_python="$work/venv/Scripts/python.exe"  # Windows runners
bounded 900 "$venv_python" -m pip install --quiet "$wheel" >"$work/install.log" 2>&1 \
    || { tail -40 "$work/install.log" >&2; fail "pip install of the wheel"; }
bounded 120 "$venv_python" -m pip check
greenprec_bin=$(dirname "$venv_python")/greenprec
[ -x "$greenprec_bin" ] || greenprec_bin="$greenprec_bin.exe"

# Outside the checkout, with nothing of it on the path: only the installed wheel answers.
outside="$work/outside"
mkdir -p "$outside"
cd "$outside"
unset PYTHONPATH
export GREENPREC_TRACE_PLUGINS=0 MPLBACKEND=Agg

step "greenprec comes from the venv, not the checkout"
location=$(bounded 60 "$venv_python" -c 'import greenprec; print(greenprec.__file__)')
case "$location" in
    "$repo"/*) fail "greenprec was imported from the checkout ($location)" ;;
    "$work"/venv/*) echo "CI: wheel-smoke: imported from $location" ;;
    *) fail "greenprec was imported from an unexpected place ($location)" ;;
esac

step "greenprec --version"
version=$(bounded 60 "$greenprec_bin" --version)
echo "$version"
expected=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/src/greenprec/_version.py")
case "$version" in *"$expected"*) ;; *) fail "--version says '$version', _version.py $expected" ;; esac

step "greenprec meters"
bounded 120 "$greenprec_bin" meters

step "greenprec measure --meter estimate -- python -c pass"
bounded 120 "$greenprec_bin" measure --meter estimate -- "$venv_python" -c pass

step "import greenprec under 0.3 s (best of 3, each in a fresh interpreter)"
best=$(for _ in 1 2 3; do
    bounded 60 "$venv_python" -c '
import time
t = time.perf_counter()
import greenprec
print(f"{time.perf_counter() - t:.4f}")'
done | sort -n | head -1)
echo "CI: wheel-smoke: import greenprec took $best s (best of 3)"
"$venv_python" -c "import sys; sys.exit(0 if float('$best') < 0.3 else 1)" \
    || fail "import greenprec took $best s, over 0.3 s"

step "the kit for plugin authors imports without pytest"
bounded 60 "$venv_python" -c '
import sys
from greenprec.testing import check_meter
from greenprec.meters.mock import MockMeter
assert "pytest" not in sys.modules
print(check_meter(MockMeter, run_s=0.1).passed_names[-1])'

study="$repo/../shared/data/seed-study"
if [ -d "$study" ]; then
    # The command docs/import.md documents for the study's recordings.
    step "greenprec import energibridge on the seed study, then greenprec report"
    (
        cd "$study"
        bounded 600 "$greenprec_bin" import energibridge \
            --group fp32='mixed_precision_false/*.csv' \
            --group mixed='mixed_precision_true/*.csv' \
            --metrics 'results/*/*.csv' \
            --out "$work/study"
    )
    bounded 600 "$greenprec_bin" report "$work/study"
    for made in stats.json report.md report.html; do
        [ -s "$work/study/$made" ] || fail "greenprec report wrote no $made"
    done
else
    step "no ../shared/data/seed-study here: the import and report of the study are skipped"
fi

echo "CI: wheel-smoke: all green"
