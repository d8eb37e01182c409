"""The training loop's view of a streamed dataset: a fixed number of batches per epoch, exact resume.

A stream (:class:`~hf_vssl.data.streaming.StreamingClipDataset`) gives every rank a different,
unknown number of samples: shard sizes differ and bad or too-short videos are skipped as they are
read. Every rank must still run the same number of optimiser steps, or one would wait forever in
a gradient all-reduce the others never reach. :class:`StreamedBatches` therefore yields exactly
``batches_per_epoch`` micro-batches per epoch on every rank, fixed from the manifest's video count::

    batches_per_epoch = num_videos // (batch_size * processes * accumulation) * accumulation

A rank whose share runs dry first reads its share again (with a warning);
the ``num_videos mod (batch x processes x accumulation)`` videos left over are not read that
epoch, like ``drop_last``. Batches are moved to the device here (``non_blocking``), since the
loader stays out of ``accelerator.prepare`` (see :mod:`hf_vssl.data.streaming`).

**Resume.** Samples carry ``stream_position = (worker, n)``; the loader's collate keeps the last
one of each batch (a batch comes from one worker). With ``W`` workers the DataLoader takes
batches from them in turn, so after ``k`` batches worker ``w`` delivered ``q + (w < r)`` of them
(``q, r = divmod(k, W)``). :meth:`StreamedBatches.state` records, per worker, the stream position
at the end of its ``q``-th batch; on resume every worker passes over that many examples without
decoding them (:meth:`~hf_vssl.data.streaming.StreamingClipDataset.resume_at`) and the first
``r`` batches (at most ``W - 1``, decoded again) are dropped, so the batches that follow are
those of the uninterrupted run, in its order. When the turns were not regular (a worker ran dry,
a second pass) the state says so and the resumed epoch is read from its start, dropping the
``k`` consumed batches: slower, still exact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch

logger = logging.getLogger(__name__)


class _PositionCollate:
    """Collate with ``collate_fn`` and keep the batch's last ``stream_position`` (worker, n)."""

    def __init__(self, collate_fn: Callable):
        self.collate_fn = collate_fn

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        positions = [sample.pop("stream_position") for sample in samples]
        batch = self.collate_fn(samples)
        batch["stream_position"] = positions[-1]
        return batch


class StreamedBatches:
    """Fixed-length, resumable, device-placing iteration over a streamed clip dataset.

    Args:
        dataset: a :class:`~hf_vssl.data.streaming.StreamingClipDataset` (already split by rank).
        batch_size / collate_fn / num_workers / pin_memory: of the underlying ``DataLoader``.
        batches_per_epoch: micro-batches every rank yields per epoch (see the module docstring).
        device: where batches go (``None``: left on the host; the loop sets its device).
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        collate_fn: Callable,
        batches_per_epoch: int,
        num_workers: int = 0,
        pin_memory: bool = False,
        device: torch.device | None = None,
    ):
        self.dataset, self.batches_per_epoch, self.device = dataset, int(batches_per_epoch), device
        self.num_workers = int(num_workers)
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            drop_last=True,
            collate_fn=_PositionCollate(collate_fn),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=pin_memory,
        )
        self.epoch = 0
        self._fresh_epoch()
        self._resumed = False

    def __len__(self) -> int:
        return self.batches_per_epoch

    @property
    def _turns(self) -> int:
        return max(1, self.num_workers)

    def _fresh_epoch(self) -> None:
        self._done, self._drop, self._passes = 0, 0, 0
        self._counts = [0] * self._turns
        self._last = [[0, 0] for _ in range(self._turns)]  # position after a worker's last two batches

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration reads (the dataset's own epoch is set by the loop)."""
        self.epoch = int(epoch)

    def state(self) -> list[int]:
        """This rank's resume state after the batches yielded so far this epoch:
        ``[regular, position of worker 0, ..., position of worker W-1]`` (see the module docstring)."""
        q, r = divmod(self._done, self._turns)
        regular = self._passes == 0 and all(
            count == q + (worker < r) for worker, count in enumerate(self._counts)
        )
        return [int(regular)] + [last[0] if worker < r else last[1] for worker, last in enumerate(self._last)]

    def resume(self, epoch: int, batches_done: int, state: list[int] | None) -> None:
        """Continue ``epoch`` after ``batches_done`` micro-batches, from :meth:`state` of the
        interrupted run (``None``, or a state of another worker count: read from the epoch's start)."""
        self.epoch = int(epoch)
        self._fresh_epoch()
        self.dataset.clear_resume()
        self._resumed = True
        if batches_done >= self.batches_per_epoch:  # saved at the epoch's end: nothing left to read
            self._done = self.batches_per_epoch
            return
        if state is not None and len(state) != 1 + self._turns:
            logger.warning(
                "the checkpoint's stream state is for %d DataLoader workers, this run has %d: its epoch is read "
                "from the start and the data order differs from the interrupted run",
                len(state) - 1,
                self._turns,
            )
            state = None
        if state is None or not state[0]:
            self._drop = batches_done  # read again from the epoch's start (decoded), dropped
            return
        q, r = divmod(batches_done, self._turns)
        positions = list(state[1:])
        self.dataset.resume_at(epoch, positions)
        self._done, self._drop = batches_done - r, r
        self._counts = [q] * self._turns
        self._last = [[0, position] for position in positions]

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.device is None:
            return batch
        return {
            key: value.to(self.device, non_blocking=True) if isinstance(value, torch.Tensor) else value
            for key, value in batch.items()
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self._resumed:
            self._fresh_epoch()
            self.dataset.clear_resume()
        self._resumed = False
        iterator, in_pass = iter(self.loader), 0
        while self._done < self.batches_per_epoch:
            try:
                batch = next(iterator)
            except StopIteration:
                if in_pass == 0:
                    raise RuntimeError(
                        f"rank {self.dataset.rank}'s share of the stream yields no full batch in epoch {self.epoch} "
                        "(too few readable videos for --per_device_train_batch_size)"
                    ) from None
                self._passes += 1
                logger.warning(
                    "epoch %d: rank %d's share of the stream ran dry after %d of its %d batches (too few readable "
                    "videos); reading it again (see docs/streaming.md)",
                    self.epoch,
                    self.dataset.rank,
                    self._done,
                    self.batches_per_epoch,
                )
                self.dataset.clear_resume()
                iterator, in_pass = iter(self.loader), 0
                continue
            in_pass += 1
            worker, position = batch.pop("stream_position")
            self._counts[worker] += 1
            self._last[worker] = [self._last[worker][1], position]
            self._done += 1
            if self._drop:
                self._drop -= 1
                continue
            yield self._to_device(batch)


def streamed_batches_per_epoch(
    num_videos: int, batch_size: int, num_processes: int, accumulation: int
) -> int:
    """Micro-batches per epoch on every rank: whole optimiser steps over ``num_videos``."""
    steps = num_videos // (batch_size * num_processes * accumulation)
    if steps < 1:
        raise ValueError(
            f"{num_videos} streamed videos cannot fill one optimiser step of {batch_size} clips x "
            f"{num_processes} processes x {accumulation} accumulation steps"
        )
    return steps * accumulation


__all__ = ["StreamedBatches", "streamed_batches_per_epoch"]
