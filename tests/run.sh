#!/usr/bin/env bash
# Run the test suite, type checks and lint on every supported CPython found on this machine.
#
# Each version gets its own virtualenv, .venv-test-3.X, created on first use. Python 3.10 and
# 3.13 are required; 3.11 and 3.12 are tested when present. Overrides:
#   PYTHON_VERSIONS   versions to test, e.g. "3.13" (default: "3.10 3.11 3.12 3.13")
#   extra arguments   passed to pytest, e.g. `bash tests/run.sh -k report -x`
set -euo pipefail
cd "$(dirname "$0")/.."

versions=${PYTHON_VERSIONS:-"3.10 3.11 3.12 3.13"}
required="3.10 3.13"

find_python() {
    local version=$1 candidate
    if command -v pyenv >/dev/null 2>&1; then
        for candidate in "$(pyenv root)"/versions/"$version".*/bin/python"$version"; do
            if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
        done
    fi
    candidate=$(command -v "python$version" 2>/dev/null || true)
    if [ -n "$candidate" ] && "$candidate" -c 'import sys' >/dev/null 2>&1; then
        echo "$candidate"; return 0
    fi
    return 1
}

tested=""
for version in $versions; do
    if ! python=$(find_python "$version"); then
        case " $required " in
            *" $version "*) echo "error: Python $version is required but was not found" >&2; exit 1 ;;
            *) echo "Python $version not found, skipped"; continue ;;
        esac
    fi
    venv=.venv-test-$version
    echo "== Python $version ($python)"
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
    "$venv/bin/python" -m pytest "$@"
    tested="$tested $version"
    last=$venv
done

if [ -z "$tested" ]; then
    echo "error: no Python version was tested" >&2
    exit 1
fi

echo "== Static checks (mypy --strict, ruff) with $last"
"$last/bin/python" -m mypy
"$last/bin/python" -m ruff check leakware tests examples benchmarks
echo "Tested on:$tested"
