#!/usr/bin/env bash
# The main job: run the FastAPI example under uvicorn on a loopback port with leakware on, send
# it a few hundred real HTTP requests, stop it, and print `leakware report`.
#
# Everything it needs goes into .venv-demo (created on first run). Environment overrides:
#   PYTHON      interpreter to build the virtualenv with (default: python3)
#   REQUESTS    number of requests to send (default: 300)
#   PORT        loopback port (default: a free one)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
venv=.venv-demo
requests=${REQUESTS:-300}
workdir=$(mktemp -d)
log=$workdir/leakware.jsonl

if [ ! -x "$venv/bin/python" ]; then
    echo "Creating $venv with $($python -V)"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[fastapi]" uvicorn

port=${PORT:-$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

echo "Starting uvicorn on 127.0.0.1:$port (events go to $log)"
LEAKWARE_SAMPLE_RATE=0.25 \
LEAKWARE_WARMUP_REQUESTS=10 \
LEAKWARE_CONFIRM_INTERVAL=1 \
LEAKWARE_LOG_FILE="$log" \
    "$venv/bin/python" -m uvicorn examples.fastapi_app:app --host 127.0.0.1 --port "$port" \
    --log-level warning &
server=$!
trap 'kill -9 "$server" 2>/dev/null || true; rm -rf "$workdir"' EXIT

for _ in $(seq 100); do
    if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health')" 2>/dev/null; then
        break
    fi
    sleep 0.2
done

echo "Sending $requests requests"
"$venv/bin/python" -m examples.traffic --port "$port" --requests "$requests"

echo "Stopping the server"
kill -INT "$server"
# leakware writes its final verdicts and a leakware.stop event as the interpreter shuts down.
# The leaked thread pools then keep the process from exiting (multiprocessing waits for their
# threads at exit), which is the bug itself, so the server is killed once leakware is done.
for _ in $(seq 100); do
    kill -0 "$server" 2>/dev/null || break
    grep -q '"leakware.stop"' "$log" && break
    sleep 0.2
done
kill -9 "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true

echo
"$venv/bin/leakware" report "$log"
