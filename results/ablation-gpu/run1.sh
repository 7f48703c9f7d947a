set -u
export FASHION_MNIST_DIR=$PWD/.fm SIAMESE_DATA_ROOT=/tmp/data OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
python3 -c "import torch;print(torch.__version__, torch.cuda.is_available())"
python3 -c "from data_utils.fashion_mnist import load_fashion_mnist as l; l(None, train=True); l(None, train=False); print('data ready')" || exit 1
mkdir -p $OUT/abl $OUT/base /tmp/logs
rows=("original" "+ lr 1e-3, one-cycle" "+ L2-normalised 128-d, BN head" "+ P x K class batches, all pairs" "+ batch-hard mining" "+ flips and shifts (improved)" "improved, all pairs instead of hardest" "improved, supcon loss" "improved, embedded below the head" "supcon, embedded below the head")
i=0
for row in "${rows[@]}"; do
  timeout 420 python3 -m solutions.ablation --rows "$row" --seeds 3 --deadline-s 250 --out $OUT/abl > /tmp/logs/$i.log 2>&1 &
  i=$((i+1))
done
timeout 420 python3 -m solutions.ablation --rows "+ flips and shifts (improved)" --budget 150000 --seeds 3 --deadline-s 250 --out $OUT/abl > /tmp/logs/q.log 2>&1 &
timeout 420 python3 -m solutions.ablation --baselines --device-for-cnn cuda --out $OUT/base > /tmp/logs/b.log 2>&1 &
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; grep -h wall_time /tmp/logs/*.log | head -3
wait
cat /tmp/logs/*.log > $OUT/all.log
python3 -m solutions.ablation --seeds 0 --out $OUT/abl | tail -12
python3 -m solutions.ablation --seeds 0 --budget 150000 --out $OUT/abl | tail -3
grep -c . $OUT/abl/runs.jsonl
