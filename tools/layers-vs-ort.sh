#!/usr/bin/env bash
# Where yolose loses to ONNX Runtime, layer by layer: yolose-bench
# --per-layer against ONNX Runtime's own per-node profile (its nodes are
# named after the yaml rows, /model.N/...), on the same model and input
# as ../shared/bench/compare.sh, rounds interleaved.  Each layer's time is
# its fastest over the rounds (noise only adds time); ONNX Runtime's
# SiLU, Add and Concat nodes count in their layer, its first two runs of
# a round are warm-up.
#
# usage: tools/layers-vs-ort.sh BUILD_DIR [MODEL] [THREADS] [ROUNDS]
#   MODEL  yolov5s-se-voc-random (default) or yolov5n-se-coco
# Needs ../shared/bench (its setup-peers.sh installs ONNX Runtime).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench_dir=$here/../../shared/bench
data=$here/../../shared/testdata
build=${1:?usage: tools/layers-vs-ort.sh BUILD_DIR [MODEL] [THREADS] [ROUNDS]}
model=${2:-yolov5s-se-voc-random} threads=${3:-1} rounds=${4:-3}
case $model in
  yolov5s-se-voc-random) input=$data/reference/yolov5s-se-voc-random-zidane.input.f32 ;;
  yolov5n-se-coco) input=$data/reference/yolov5n-se-coco-bus.input.f32 ;;
  *) echo "unknown model $model" >&2; exit 2 ;;
esac
export PEERS_DIR=${PEERS_DIR:-$HOME/.cache/yolose-peers}
"$bench_dir/setup-peers.sh" >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/profile.js" <<'EOF'
// node profile.js MODEL.onnx INPUT.f32 THREADS RUNS PREFIX: one profiled session
const path = require('path');
const fs = require('fs');
const ort = require(path.join(process.env.PEERS_DIR, 'node_modules', 'onnxruntime-node'));
(async () => {
  const [model, input, threads, runs, prefix] = process.argv.slice(2);
  const s = await ort.InferenceSession.create(model, {
    intraOpNumThreads: +threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
    executionMode: 'sequential', enableProfiling: true, profileFilePrefix: prefix});
  const buf = fs.readFileSync(input);
  const side = Math.round(Math.sqrt(buf.length / 12));
  const x = new ort.Tensor('float32', new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4), [1, 3, side, side]);
  for (let i = 0; i < +runs; i++) await s.run({[s.inputNames[0]]: x});
  s.endProfiling();
})();
EOF

for r in $(seq "$rounds"); do
  "$build/tools/yolose-bench" --model "$data/models/$model.pt" --input "$input" \
    --threads "$threads" --iterations 5 --per-layer | awk '$1 ~ /^[0-9]+$/ {print $1, $2, $4}' >>"$work/yolose.txt"
  node "$work/profile.js" "$bench_dir/models/$model.onnx" "$input" "$threads" 7 "$work/ort-$r"
done

/usr/bin/python3 - "$work" "$model" "$threads" <<'EOF'
import collections, glob, json, re, sys

work, model, threads = sys.argv[1:]
ours, kind = collections.defaultdict(list), {}
for line in open(f"{work}/yolose.txt"):
    layer, name, ms = line.split()
    ours[int(layer)].append(float(ms))
    kind[int(layer)] = name
peer = collections.defaultdict(list)
for path in glob.glob(f"{work}/ort-*.json"):
    runs = []
    for e in json.load(open(path)):
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        if e["name"].startswith("/model.0/"):
            if not runs or runs[-1].get("started"):
                runs.append(collections.defaultdict(float))
        m = re.match(r"/model\.(\d+)/", e["name"])
        if runs:
            runs[-1][int(m.group(1)) if m else -1] += e["dur"] / 1000
            runs[-1]["started"] = m is None or int(m.group(1)) > 0
    for run in runs[2:]:
        for layer, ms in run.items():
            if layer != "started":
                peer[layer].append(ms)
print(f"{model}, {threads} thread(s): fastest ms per layer")
print("layer  type            yolose      ORT   yolose/ORT")
total_ours = total_peer = 0.0
for layer in sorted(ours):
    y, o = min(ours[layer]), min(peer.get(layer, [0.0]))
    total_ours, total_peer = total_ours + y, total_peer + o
    ratio = f"{y / o:8.2f}" if o > 0 else "       -"
    print(f"{layer:5d}  {kind[layer]:12s} {y:8.2f} {o:8.2f} {ratio}")
rest = min(peer.get(-1, [0.0]))
print(f"       other nodes           - {rest:8.2f}")
total_peer += rest
print(f"       sum          {total_ours:8.2f} {total_peer:8.2f} {total_ours / total_peer:8.2f}")
EOF
