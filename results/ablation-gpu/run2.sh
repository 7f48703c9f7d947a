set -u
export FASHION_MNIST_DIR=$PWD/.fm SIAMESE_DATA_ROOT=/tmp/data OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
python3 -c "from data_utils.fashion_mnist import load_fashion_mnist as l; l(None, train=True); l(None, train=False); print('data ready')" || exit 1
mkdir -p $OUT/abl /tmp/logs
go() { timeout 190 python3 -m solutions.ablation --rows "$1" --first-seed $2 --seeds 1 --out $OUT/abl ${3:-} > /tmp/logs/$RANDOM.log 2>&1 & }
go "+ P x K class batches, all pairs" 1
go "+ P x K class batches, all pairs" 2
go "+ flips and shifts (improved)" 2
go "improved, all pairs instead of hardest" 1
go "improved, all pairs instead of hardest" 2
go "improved, supcon loss" 2
go "improved, embedded below the head" 2
go "supcon, embedded below the head" 2
go "supcon, embedded below the head" 0 "--budget 150000"
go "supcon, embedded below the head" 1 "--budget 150000"
go "supcon, embedded below the head" 2 "--budget 150000"
wait
cat /tmp/logs/*.log > $OUT/all.log
grep -h '"row"' /tmp/logs/*.log | cut -c1-400
grep -c . $OUT/abl/runs.jsonl
