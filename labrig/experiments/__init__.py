"""The paper's experiments, run by our own code on real data.

- `classification`: teacher, no-KD and KD SCLC students, and the KD student
  through the simulated bench's optics, with a JSON + markdown report;
- `kd_study`: when does KD help? Seeds × back ends × KD settings × budgets,
  the paper protocol, feature hints and a detection ablation, each stated
  plainly against the seed spread;
- `efficiency`: electronic FLOPs and measured latency against input resolution.

Every training run is a resumable `Job`; results live beside the checkpoints.
"""

from labrig.experiments.classification import ClassificationConfig, run_classification
from labrig.experiments.jobs import Job, JobData, run_job

__all__ = ["ClassificationConfig", "Job", "JobData", "run_classification", "run_job"]
