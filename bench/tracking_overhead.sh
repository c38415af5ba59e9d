#!/usr/bin/env bash
# Training speed with and without MLflow tracking, side by side: the
# quickstart's smallest model (2 layers x 64, 300 steps, batch 32 x 64) run
# alternately with tracking to a local MLflow server from the venv and
# without, three times each; prints tokens/s (training steps only) and the
# overhead. A benchmark, not a test. Usage: bench/tracking_overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTLAB:-target/release/bertlab}
python=${BERTLAB_PYTHON:-.venv/bin/python}
dir=$(mktemp -d)
port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$python" -m mlflow server --backend-store-uri "sqlite:///$dir/mlflow.db" --artifacts-destination "$dir/artifacts" \
    --host 127.0.0.1 --port "$port" --workers 1 > "$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$dir"' EXIT
until curl -sf "http://127.0.0.1:$port/health" > /dev/null; do sleep 0.5; done

sed -e 's/^"model.layers" = .*/"model.layers" = [2]/' -e 's/^"model.hidden" = .*/"model.hidden" = [64]/' \
    -e 's/^name = "quickstart"/name = "overhead"/' experiments/quickstart.toml > "$dir/overhead.toml"
speed() { grep -o '[0-9]* tokens/s' | head -n 1 | cut -d' ' -f1; }
with=(); without=()
for i in 1 2 3; do
    without+=("$("$bin" run "$dir/overhead.toml" --out "$dir/off" --fresh 2>&1 | speed)")
    with+=("$(MLFLOW_TRACKING_URI="http://127.0.0.1:$port" "$bin" run "$dir/overhead.toml" --out "$dir/on" --fresh 2>&1 | speed)")
done
echo "tokens/s without tracking: ${without[*]}"
echo "tokens/s with tracking:    ${with[*]}"
python3 -c "
import statistics as s, sys
off, on = [float(x) for x in sys.argv[1].split()], [float(x) for x in sys.argv[2].split()]
print(f'median {s.median(off):.0f} vs {s.median(on):.0f} tokens/s: tracking costs {100 * (1 - s.median(on) / s.median(off)):.2f}% of step time')
" "${without[*]}" "${with[*]}"
