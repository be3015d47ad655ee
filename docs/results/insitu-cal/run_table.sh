#!/bin/bash
# The in-situ table, sized for a 2-core machine under load ~25 (this session's share ~0.3 core):
# 4 niced processes: P0 = (b), (f), (a); one per seed doing (d), (e), (c) in turn.
C=/work/artifacts/insitu/code-47d488e
T=/work/artifacts/insitu/table
PY=/work/main/.venv/bin/python
CK=/work/artifacts/demo/experiment/jobs/5ff24442de08ecf3/best.pt
CAL=/work/artifacts/cal-sim.h5
COMMON="--checkpoint $CK --calibration $CAL --data /work/shared/data/fashion-mnist --frames 1600 --batch 16 --test-images 2000 --eval-images 200 --eval-every 25 --program $T/p0/calibrated-program.h5"
export OMP_NUM_THREADS=1 PYTHONPATH=$C
cd $C
nice -n 15 $PY benchmarks/insitu_table.py $COMMON --arms bfa --out $T/p0 > $T/p0.log 2>&1 &
for s in 0 1 2; do
  nice -n 15 $PY benchmarks/insitu_table.py $COMMON --arms dec --seeds $s --out $T/s$s > $T/s$s.log 2>&1 &
done
wait
echo done > $T/ALL_DONE
