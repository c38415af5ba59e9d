#!/usr/bin/env bash
# What reading a big corpus costs, side by side in one call: the same text
# (the bundled corpus's paragraphs, repeated and numbered to SIZE_MB, default
# 1024) as .txt, as .parquet and as the Arrow IPC stream `datasets` writes
# (pyarrow from .venv, 1000 rows a batch), each read as `data.corpus` reads it
# (runner/examples/read_corpus.rs: hashing for the cache key included);
# prints each one's seconds and peak resident memory, and the ratios to
# .txt. A benchmark, not a test. Usage: bench/corpus_read.sh
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${SIZE_MB:-1024}
reader=${READ_CORPUS:-target/release/examples/read_corpus}
python=${PYTHON:-.venv/bin/python}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

"$python" - "$dir" "$size_mb" <<'PY'
import sys, pyarrow as pa, pyarrow.parquet as pq
out, size = sys.argv[1], int(sys.argv[2]) << 20
paragraphs = [p for p in open("experiments/data/python-reference.txt").read().split("\n\n") if p.strip()]
schema = pa.schema([("text", pa.string())])
written, batch, i = 0, [], 0
with open(f"{out}/corpus.txt", "w") as txt, pa.OSFile(f"{out}/corpus.arrow", "wb") as sink, \
        pa.ipc.new_stream(sink, schema) as arrow, pq.ParquetWriter(f"{out}/corpus.parquet", schema) as parquet:
    while written < size:
        doc = f"{i} {paragraphs[i % len(paragraphs)]}"
        txt.write(doc + "\n\n")
        written += len(doc.encode()) + 2
        batch.append(doc)
        i += 1
        if len(batch) == 1000 or written >= size:
            table = pa.table({"text": batch}, schema=schema)
            arrow.write_table(table)
            parquet.write_table(table)
            batch = []
print(f"{i} documents, {written >> 20} MiB of text", file=sys.stderr)
PY
ls -l "$dir" >&2
results=()
for format in txt parquet arrow; do
    line=$("$reader" "$dir/corpus.$format")
    echo "$format $line"
    results+=("$format $line")
done
"$python" - "${results[@]}" <<'PY'
import sys, json
rows = {a.split(" ", 1)[0]: json.loads(a.split(" ", 1)[1]) for a in sys.argv[1:]}
base = rows["txt"]
for name, r in rows.items():
    assert r["documents"] == base["documents"], (name, r, base)
    print(f"{name:8} {r['seconds']:6.2f} s  peak {r['peak_resident_bytes'] / 2**30:5.2f} GiB  "
          f"time x{r['seconds'] / base['seconds']:.2f}  memory x{r['peak_resident_bytes'] / base['peak_resident_bytes']:.2f} (vs .txt)")
PY
