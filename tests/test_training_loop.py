"""The one training loop (hf_vssl.training.loop.train) on a toy job: per-micro-batch generators, the
logged window averages, checkpoints and the export hook; and derive_seed."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from hf_vssl.training.arguments import LoopArguments
from hf_vssl.training.loop import TrainingJob, build_accelerator, to_channels_last_3d, train
from hf_vssl.utils.seeding import derive_seed


def test_derive_seed_is_a_stable_63_bit_hash_of_its_arguments():
    assert derive_seed(0, 0, 0, 0) == 6189968047434225789  # pinned: the same in every process and version
    seeds = {
        derive_seed(*args) for args in [(7, 0, 1, 0), (7, 1, 0, 0), (7, 0, 0, 1), (7, 0, 1), (8, 0, 1, 0)]
    }
    assert len(seeds) == 5 and all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(7, 0, 1, 0) == derive_seed(7, 0, 1, 0)
    with pytest.raises(ValueError, match="64 bits"):
        derive_seed(2**64)


class ToyDataset(torch.utils.data.Dataset):
    def __init__(self, size: int):
        self.size, self.epochs = size, []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": torch.full((3,), float(index)), "index": index}


@dataclass
class ToyArguments(LoopArguments):
    subset_seed: int = 0


def test_one_loop_seeds_each_micro_batch_and_logs_window_means(tmp_path):
    args = ToyArguments(
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=4,
        logging_steps=2,
        save_steps=3,
        save_total_limit=5,
        channels_last=False,
        dataloader_num_workers=0,
        report_to="none",
        seed=5,
        warmup_ratio=0.0,
    )
    output_dir = tmp_path / "run"
    accelerator = build_accelerator(
        args, output_dir
    )  # bf16 as every recipe test: one AcceleratorState per process
    dataset = ToyDataset(12)  # 6 batches of 2 = 3 optimiser steps per epoch: step 4 is in epoch 1
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, shuffle=True, drop_last=True)
    model = nn.Linear(3, 1)
    calls = []

    def step(prepared, batch, generator):
        value = batch["pixel_values"][:, 0].mean()  # the mean index of the micro-batch: differs per batch
        calls.append((generator.initial_seed(), float(value)))
        loss = (prepared(batch["pixel_values"]).squeeze(-1) * 0).mean() + value
        return loss, {"index_mean": value.detach(), "two": torch.tensor(2.0)}

    exported = []
    trained = train(
        accelerator,
        args,
        output_dir,
        TrainingJob(
            name="toy",
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            dataset=dataset,
            dataloader=loader,
            step=step,
            export=lambda m, s: exported.append((m, s)),
        ),
    )

    expected = [derive_seed(5, 0, b, 0) for b in range(6)] + [derive_seed(5, 1, b, 0) for b in range(2)]
    assert [seed for seed, _ in calls] == expected
    assert sorted(set(dataset.epochs)) == [0, 1]  # (Accelerate forwards set_epoch to the dataset too)
    assert exported == [(trained, 4)] and trained is model
    logs = [json.loads(line) for line in (output_dir / "log_history.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logs] == [2, 4]
    values = [value for _, value in calls]
    for entry, window in zip(logs, (values[:4], values[4:])):  # logging_steps x accumulation micro-batches
        assert entry["loss"] == pytest.approx(sum(window) / 4)
        assert entry["index_mean"] == pytest.approx(sum(window) / 4)
        assert entry["two"] == pytest.approx(2.0)
        assert entry["clips_per_second"] > 0 and "lr" in entry
    assert logs[1]["epoch"] == pytest.approx(1 + 1 / 3)
    assert sorted(p.name for p in (output_dir / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-4"]


def test_check_logs_sees_every_logged_window_and_its_warning_is_logged(tmp_path, caplog):
    args = ToyArguments(
        per_device_train_batch_size=2,
        max_steps=4,
        logging_steps=2,
        save_steps=4,
        channels_last=False,
        dataloader_num_workers=0,
        report_to="none",
        warmup_ratio=0.0,
    )
    accelerator = build_accelerator(args, tmp_path / "run")
    dataset = ToyDataset(8)
    model = nn.Linear(3, 1)
    seen = []

    def check_logs(logs):
        seen.append(logs["step_value"])
        return "collapsing" if len(seen) == 2 else None

    def step(prepared, batch, generator):
        return prepared(batch["pixel_values"]).mean(), {"step_value": torch.tensor(float(len(seen)))}

    with caplog.at_level("WARNING", logger="hf_vssl.training.loop"):
        train(
            accelerator,
            args,
            tmp_path / "run",
            TrainingJob(
                name="toy",
                model=model,
                optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                dataset=dataset,
                dataloader=torch.utils.data.DataLoader(dataset, batch_size=2),
                step=step,
                export=lambda m, s: None,
                check_logs=check_logs,
            ),
        )
    assert seen == [0.0, 1.0]  # once per logging window, with that window's averages
    assert [r.getMessage() for r in caplog.records if "collapsing" in r.getMessage()] == [
        "step 4: collapsing"
    ]


def test_channels_last_3d_leaves_2d_convolutions_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv3d(4, 4, 3))
    to_channels_last_3d(model)
    assert model[1].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert model[0].weight.is_contiguous()
