"""The budget demonstration's arms: same models, a subset under each rule, and the full set."""

from __future__ import annotations

import pytest

from labrig.experiments.budget import BudgetConfig
from labrig.experiments.classification import FULL_TRAIN, ClassificationConfig
from labrig.models.errors import ModelConfigError


def test_arms_differ_only_in_data_and_budget_rule() -> None:
    config = BudgetConfig(fraction=0.1, teacher_epochs=2, student_epochs=3)
    (old, old_rule), (new, new_rule), (full, full_rule) = (config.arm(a) for a in
                                                           ("subset/epochs", "subset/steps", "full"))
    assert (old_rule, new_rule, full_rule) == ("epochs", "steps", "steps")
    assert old.train_limit == new.train_limit == round(0.1 * FULL_TRAIN) and full.train_limit is None
    assert old.student == new.student == full.student and old.teacher == new.teacher
    per_pass = old.train_limit // 128
    # the old rule runs the stated epochs on the subset: a tenth of the steps
    assert old.student_train.epochs_for(per_pass) == 3
    # the new rule runs as many steps as the full set gets, in ten times the epochs
    assert new.student_train.epochs_for(per_pass) * per_pass >= full.student_train.epochs_for(FULL_TRAIN // 128) \
        * (FULL_TRAIN // 128)
    assert new.teacher_train.reference_steps() == 2 * (FULL_TRAIN // 128)


def test_train_fraction_option_and_bad_fractions() -> None:
    assert ClassificationConfig().with_train_fraction(0.1).train_limit == 5500
    assert ClassificationConfig().with_train_fraction(1.0).train_limit is None
    with pytest.raises(ModelConfigError, match="train-fraction"):
        ClassificationConfig().with_train_fraction(0.0)
    with pytest.raises(ModelConfigError, match="fraction"):
        BudgetConfig(fraction=1.5)
