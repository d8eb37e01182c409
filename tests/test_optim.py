"""How the recipes turn a task's optimiser defaults and the user's flags into one setting."""

import pytest

from hf_vssl.pretext import build_pretext_task
from hf_vssl.training.optim import SWITCHED_OPTIMIZER_LR, resolve_optimizer_settings

RSPNET = build_pretext_task("rspnet", 64).optimizer_defaults  # SGD 0.05 per 64 samples


def test_default_learning_rate_follows_the_linear_scaling_rule():
    settings = resolve_optimizer_settings(RSPNET, total_batch_size=8)
    assert settings["optimizer"] == "sgd"
    assert settings["learning_rate"] == pytest.approx(0.05 * 8 / 64)
    assert "reference_batch_size" not in settings


def test_a_learning_rate_the_user_gives_is_used_as_is():
    assert resolve_optimizer_settings(RSPNET, total_batch_size=8, learning_rate=0.3)["learning_rate"] == 0.3
    settings = resolve_optimizer_settings(RSPNET, total_batch_size=8, optimizer="adamw", learning_rate=2e-4)
    assert (settings["optimizer"], settings["learning_rate"]) == ("adamw", 2e-4)


def test_switching_optimiser_without_a_learning_rate_starts_from_that_optimisers_default():
    settings = resolve_optimizer_settings(RSPNET, total_batch_size=8, optimizer="adamw")
    assert settings["learning_rate"] == SWITCHED_OPTIMIZER_LR["adamw"] == 1e-3  # not the SGD 0.00625
    assert settings["weight_decay"] == RSPNET["weight_decay"]
    # Naming the task's own optimiser is not a switch: the scaled default stays.
    assert resolve_optimizer_settings(RSPNET, total_batch_size=8, optimizer="SGD")[
        "learning_rate"
    ] == pytest.approx(0.00625)
