#!/usr/bin/env bash
# The GPU benchmarks in one command (steps 1 and 2 unless STEPS says otherwise), for whoever next has a GPU.
#
#   PYTHONPATH=. bash benchmarks/gpu_suite.sh                 # steps 1 2: the speed suite, ~5 minutes
#   STEPS="1 2 3 4" PYTHONPATH=. bash benchmarks/gpu_suite.sh # and the probe and accuracy runs (~20 more minutes)
#   FMNIST_DIR=/data/fashion-mnist EPOCHS=25 STEPS=4 PYTHONPATH=. bash benchmarks/gpu_suite.sh
#   TINY=1 DEVICE=cpu STEPS="1 2" bash benchmarks/gpu_suite.sh  # the script itself, tiny, on a CPU: rows go to $WORK
#
# Needs torch (CUDA), torchvision, scikit-learn, h5py, click, tqdm, matplotlib, scipy, dd; no network,
# no install: run from the repo root. Fashion-MNIST is the four idx .gz files (Debian's
# dataset-fashion-mnist; copy /usr/share/datasets/fashion-mnist to .gpu/fashion-mnist, which git
# ignores, and carry that folder to the GPU machine). Scratch files go to $WORK (default .gpu/work).
#
# Steps and what each writes (rows are appended or replaced; every row names the device):
#   (1) training ablation, imagenet32 width 128 batch 128: each speed change of the step on and
#       off, torch.compile, checkpoints sync/async, the plain pytorch/examples loop, a batch sweep
#       128..1024 and the per-layer cuDNN ceiling                                         -> results/train_ablation.csv
#   (2) extraction to HDF5, imagenet32 width 128, 50000 images; then the disk's own sequential
#       write speed (dd oflag=direct) in the same folder                                  -> results/extract_speed.csv, disk_speed.csv
#   (3) probe speed, 50000 x 28672 (random imagenet32 D over Fashion-MNIST), both probes  -> results/probe_speed.csv
#   (4) train imagenet32 width 128 on Fashion-MNIST ($EPOCHS epochs), then the accuracy
#       table: pixels, random D, trained D, each block                                    -> results/accuracy.csv, per_block.png
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-.}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
WORK=${WORK:-.gpu/work}
EPOCHS=${EPOCHS:-15}
STEPS=${STEPS:-1 2}
DEVICE=${DEVICE:-cuda}
TINY=${TINY:-}
RESULTS=results
[ -z "$TINY" ] || RESULTS="$WORK"   # a tiny check of the script never touches results/
FMNIST_DIR=${FMNIST_DIR:-}
if [ -z "$FMNIST_DIR" ]; then
  for d in .gpu/fashion-mnist /usr/share/datasets/fashion-mnist data/fashion-mnist; do
    if [ -f "$d/train-images-idx3-ubyte.gz" ]; then FMNIST_DIR=$d; break; fi
  done
fi
if [ -z "$FMNIST_DIR" ]; then
  echo "gpu_suite: Fashion-MNIST not found; set FMNIST_DIR to the folder of its four idx .gz files" >&2
  exit 2
fi
[ "$DEVICE" != cuda ] || "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { echo "gpu_suite: no CUDA device visible to torch" >&2; exit 2; }
mkdir -p "$WORK"
CLI="$PY -m dcgan_features.cli"
DEVICE_NAME=$("$PY" -c "import torch; from dcgan_features.devices import device_name, resolve_device; print(device_name(resolve_device('$DEVICE')))")
NOTE="gpu_suite.sh on $DEVICE_NAME at $(git rev-parse --short HEAD 2>/dev/null || echo '?')${TINY:+ (TINY script check)}"
t_start=$(date +%s)
banner() { echo; echo "== [$(( $(date +%s) - t_start )) s] $*"; }
failed=""
# A failed step is reported and the next one still runs: GPU time is scarce, one bug should not
# cost the other measurements.
# (set -e is ignored inside a `cmd || handler` list, hence the explicit status check.)
run_step() { case " $STEPS " in *" $1 "*) ;; *) return 0 ;; esac
  set +e; ( set -euo pipefail; "step$1" ); local rc=$?; set -e
  [ $rc -eq 0 ] || { echo "gpu_suite: step $1 failed (exit $rc)" >&2; failed="$failed $1"; }; }

step1() {
banner "(1) training ablation: imagenet32 width 128, batch 128 (+ sweep to 1024)"
if [ -z "$TINY" ]; then
  "$PY" benchmarks/train_speed.py --device "$DEVICE" --arch imagenet32 --width 128 --batch 128 --steps 200 --warmup 20 \
    --ceiling --note "$NOTE" --csv "$RESULTS/train_ablation.csv"
else
  "$PY" benchmarks/train_speed.py --device "$DEVICE" --arch dcgan32 --width 4 --batch 16 --steps 3 --warmup 1 \
    --n-images 256 --sweep 32 --ckpt-every 2 --note "$NOTE" --csv "$RESULTS/train_ablation.csv"
fi
}

step2() {
banner "(2) extraction: imagenet32 width 128, 50000 images -> HDF5; then the disk's own write speed there"
if [ -z "$TINY" ]; then
  "$PY" benchmarks/extract_speed.py --device "$DEVICE" --arch imagenet32 --width 128 --n 50000 --batch-size 1024 \
    --dataset fashion-mnist --data-dir "$FMNIST_DIR" --tmp-dir "$WORK" --note "$NOTE" --out "$RESULTS/extract_speed.csv"
  "$PY" benchmarks/disk_speed.py --device "$DEVICE" --dir "$WORK" --mb 8192 --note "$NOTE" --csv "$RESULTS/disk_speed.csv"
else
  "$PY" benchmarks/extract_speed.py --device "$DEVICE" --arch dcgan32 --width 4 --n 64 --batch-size 32 \
    --dataset fashion-mnist --data-dir "$FMNIST_DIR" --tmp-dir "$WORK" --note "$NOTE" --out "$RESULTS/extract_speed.csv"
  "$PY" benchmarks/disk_speed.py --device "$DEVICE" --dir "$WORK" --mb 64 --note "$NOTE" --csv "$RESULTS/disk_speed.csv"
fi
# The target compares the two last rows of this machine: extraction MB/s over the disk's own MB/s.
"$PY" - "$RESULTS/extract_speed.csv" "$RESULTS/disk_speed.csv" "$DEVICE_NAME" <<'PYEOF'
import csv, sys
ext, disk, name = sys.argv[1:]
e = [r for r in csv.DictReader(open(ext)) if name in r["device"]]
d = [r for r in csv.DictReader(open(disk)) if name in r["device"]]
if e and d:
    best = max(float(r["mb_written_per_s"]) for r in e[-2:])
    print(f"extraction writes {best:.1f} MB/s = {100 * best / float(d[-1]['mb_per_s']):.0f}% of the disk's "
          f"{float(d[-1]['mb_per_s']):.1f} MB/s (target >= 90%)")
PYEOF
}

step3() {
banner "(3) probe speed: 50000 x 28672 features, both probes, whole C grid"
FEATS="$WORK/fmnist_imagenet32_random.h5"
$CLI extract --random-init --arch imagenet32 --width 128 --seed 0 --dataset fashion-mnist --data-dir "$FMNIST_DIR" \
  --limit 50000 --bn batch --batch-size 1024 --device cuda --out "$FEATS"
"$PY" benchmarks/probe_speed.py --features "$FEATS" --device cuda --backends torch --probes svm,logreg \
  --case cifar10-sized --note "$NOTE" --out "$RESULTS/probe_speed.csv"
}

step4() {
banner "(4) Fashion-MNIST accuracy with a trained imagenet32 (width 128, $EPOCHS epochs)"
RUN="$WORK/fm_imagenet32"
$CLI train --dataset fashion-mnist --data-dir "$FMNIST_DIR" --arch imagenet32 --width 128 --epochs "$EPOCHS" \
  --batch-size 128 --device cuda --out "$RUN" $( [ -f "$RUN/checkpoints/last.pt" ] && echo --resume )
"$PY" benchmarks/accuracy.py --dataset fashion-mnist --data-dir "$FMNIST_DIR" --checkpoint "$RUN/checkpoints/last.pt" \
  --device cuda --work-dir "$WORK/accuracy" --note "$NOTE; imagenet32 w128 trained $EPOCHS epochs on Fashion-MNIST train" \
  --out "$RESULTS/accuracy.csv" --plot "$RESULTS/per_block.png"
cp "$RUN"/samples/$(ls "$RUN/samples" | tail -1) "$RESULTS/fashion_mnist_samples.png"
}

for n in 1 2 3 4; do run_step $n; done

banner "summary"
for f in "$RESULTS"/train_ablation.csv "$RESULTS"/extract_speed.csv "$RESULTS"/disk_speed.csv "$RESULTS"/probe_speed.csv "$RESULTS"/accuracy.csv; do
  [ -f "$f" ] || continue
  echo "--- $f (rows from this machine)"
  grep -F "$DEVICE_NAME" "$f" | tail -n 20 || true
done
echo "gpu_suite: done in $(( $(date +%s) - t_start )) s; commit results/ with the device named in results/README.md"
[ -z "$failed" ] || { echo "gpu_suite: failed steps:$failed" >&2; exit 1; }
