#!/bin/bash
# Arm (c) again: /work/artifacts/cal-sim.h5 was replaced (new hash eb2469a67173) at 06:45:37 while (c) ran; the
# program and arms (b),(d),(e) used 4b71e8b8ba72, of which cal-sim-own.h5 is an identical copy (same hash).
C=/work/artifacts/insitu/code-47d488e
T=/work/artifacts/insitu/table
PY=/work/main/.venv/bin/python
CK=/work/artifacts/demo/experiment/jobs/5ff24442de08ecf3/best.pt
CAL=/work/artifacts/insitu/cal-sim-own.h5
COMMON="--checkpoint $CK --calibration $CAL --data /work/shared/data/fashion-mnist --frames 1600 --batch 16 --test-images 2000 --eval-images 200 --eval-every 25 --program $T/p0/calibrated-program.h5"
export OMP_NUM_THREADS=1 PYTHONPATH=$C
cd $C
for s in 0 1 2; do
  nice -n 15 $PY benchmarks/insitu_table.py $COMMON --arms c --seeds $s --out $T/c$s > $T/c$s.log 2>&1 &
done
wait
