"""A pretext task fits its dataset-dependent settings itself, and the model records the resolved settings."""

from __future__ import annotations

import logging

from hf_vssl.models import VSSLConfig
from hf_vssl.pretext.modeling import VSSLForPretraining
from hf_vssl.pretext.registry import PRETEXT_TASKS, get_pretext_task_class


def test_queue_tasks_cap_a_default_queue_to_half_the_videos(caplog):
    with caplog.at_level(logging.WARNING, logger="hf_vssl.pretext.contrastive"):
        assert get_pretext_task_class("rspnet").fit_to_dataset(None, 100) == {"queue_size": 32}  # 2**5 <= 50
    assert "16384 keys exceeds half of the 100 training videos" in caplog.text
    assert get_pretext_task_class("tdl").fit_to_dataset({"temperature": 0.1}, 300) == {
        "temperature": 0.1,
        "queue_size": 128,
    }
    assert get_pretext_task_class("tdl").fit_to_dataset(None, 1000) is None  # 500 <= 1000 // 2: unchanged
    explicit = {"queue_size": 4096}
    assert get_pretext_task_class("rspnet").fit_to_dataset(explicit, 10) is explicit  # never overridden


def test_tasks_without_dataset_dependent_settings_keep_theirs():
    for name, task in PRETEXT_TASKS.items():
        if name not in ("rspnet", "tdl"):
            assert task.fit_to_dataset(None, 3) is None and task.fit_to_dataset({"x": 1}, 3) == {"x": 1}


def test_the_model_writes_its_resolved_settings_into_its_config():
    config = VSSLConfig(
        backbone="r3d",
        width_multiplier=0.125,
        num_frames=8,
        image_size=32,
        pretext_task="tdl",
        pretext_config={"queue_size": 64},
    )
    model = VSSLForPretraining(config)
    assert model.config.pretext_config == model.pretext.settings.to_dict()
    assert model.config.pretext_config["queue_size"] == 64 and "temperature" in model.config.pretext_config
