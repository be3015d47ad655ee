"""What one segmentation experiment is: its data, seeds, models and training budgets.

Apart from the experiment (`segmentation`) so that its report (`seg_report`)
can name the settings without importing the code that runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from labrig.data.segmentation import SceneConfig
from labrig.distill import DistillConfig, TrainConfig
from labrig.experiments.seg_data import SegDataConfig
from labrig.models.optical import OpticsConfig
from labrig.models.sclc import SCLCConfig
from labrig.models.segmentation import DecoderConfig, SegStudentConfig
from labrig.models.unet import UNetConfig

__all__ = ["DEFAULT_STUDENT", "SegmentationConfig"]

DEFAULT_STUDENT = SegStudentConfig(
    frontend=SCLCConfig(channels=(8, 8), kernel_sizes=(9, 9)),
    decoder=DecoderConfig(widths=(32, 32, 32), dilations=(1, 2, 4), downsample=2),
    optics=OpticsConfig(profile="sim-wide", max_per_frame=4),
)
"""8 optical channels of 17 x 17 collapsed kernels (two 9 x 9 layers), coherent detection;
a three-layer dilated decoder at half resolution; the `sim-wide` bench, 4 tiles a frame."""


@dataclass(frozen=True)
class SegmentationConfig:
    """One experiment. `seeds` repeat the students (the teacher is trained once)."""

    data: SegDataConfig = field(default_factory=SegDataConfig)
    seeds: tuple[int, ...] = (0, 1, 2)
    teacher: UNetConfig = field(default_factory=lambda: UNetConfig(width=16, depth=3))
    teacher_train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=12, batch_size=16, eval_batch_size=32, lr=2e-3, weight_decay=1e-4, warmup_epochs=0.5))
    """Sized for a 2-core CPU session (about 40 min at 20 images/s); a GPU affords more."""
    student: SegStudentConfig = field(default_factory=lambda: DEFAULT_STUDENT)
    student_train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=10, batch_size=16, eval_batch_size=32, lr=3e-3, weight_decay=1e-4, warmup_epochs=0.5))
    """The same for every arm; about 13 min a run on one CPU thread with cached teacher logits."""
    kd: DistillConfig = field(default_factory=lambda: DistillConfig(method="kd", temperature=4.0, alpha=0.5))
    hint: DistillConfig | None = None
    """A KD + feature-hint arm (teacher stage ``dec0`` against the optical channels); None: off."""
    optical_finetune: TrainConfig | None = field(default_factory=lambda: TrainConfig(
        epochs=1, batch_size=8, eval_batch_size=8, lr=3e-4, max_steps_per_epoch=60))
    """Optics-aware fine-tune of the KD student (None: score it through the optics as trained);
    no per-epoch validation (the twin is slow): its last weights are kept."""
    optical_test_limit: int | None = 200
    """Test images scored through the twin (None: all); the twin runs 1024 x 1024 FFTs per
    frame, which a CPU feels."""
    figure_images: int = 4

    @classmethod
    def quick(cls) -> SegmentationConfig:
        """Minutes on a CPU, for CI and demos: 64 px scenes, few images and epochs."""
        student = replace(DEFAULT_STUDENT, input_size=(64, 64),
                          decoder=DecoderConfig(widths=(16, 16), dilations=(1, 2), downsample=2))
        return cls(
            data=SegDataConfig(size=64, train=384, val=64, test=64,
                               scenes=SceneConfig(items=(1, 3), item_scale=(0.35, 0.6))),
            seeds=(0,),
            teacher=UNetConfig(width=8, depth=2),
            teacher_train=TrainConfig(epochs=4, batch_size=16, eval_batch_size=64, lr=5e-3),
            student=student,
            student_train=TrainConfig(epochs=4, batch_size=16, eval_batch_size=64, lr=5e-3),
            optical_finetune=TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, lr=3e-4, max_steps_per_epoch=4),
            optical_test_limit=32,
            figure_images=3,
        )
