"""Pieces shared by the contrastive tasks (CVRL, TDL, RSPNet), written once.

- :class:`MomentumEncoder`: an exponential-moving-average copy of online modules (MoCo's key
  encoder, momentum 0.999), updated with fused ``torch._foreach`` ops, no gradients.
- :class:`FeatureQueue`: MoCo's memory of past keys. Under DDP the keys of every rank are
  gathered with ``torch.distributed.all_gather`` before they enter the queue, so all ranks hold
  the same queue. The queue and its pointer are persistent buffers, so they are checkpointed,
  and the pointer arithmetic stays on the device (no host sync per step).
- :func:`info_nce` (query vs. one positive key and a set of negatives) and
  :func:`symmetric_info_nce` (SimCLR / CVRL, in-batch negatives), computed in float32;
  :func:`info_nce_logits` gives the logits themselves, so a task can log diagnostics from them.
- Collapse diagnostics (detached tensors, no host sync): :func:`logit_gap` (positive logit minus
  the mean negative logit; 0 when every key looks alike) and :func:`concentration` (norm of the
  mean of L2-normalised embeddings; 1 when they all point one way).
- :func:`concat_all_gather` (no gradient) and :func:`gather_with_grad`; both are the identity in
  a single process.

BatchNorm leak under DDP: **shuffle-BN**, not SyncBN.
    With per-device BatchNorm, a query and its positive key are normalised with statistics of
    the same few samples, which the network can exploit to find its positive without learning
    anything about the video (MoCo, section 3.3). We shuffle the key batch across ranks before
    the key encoder and unshuffle its outputs (:func:`batch_shuffle` / :func:`batch_unshuffle`),
    as MoCo and RSPNet do. Why not SyncBN: ``torch.nn.SyncBatchNorm`` refuses CPU tensors, so it
    cannot run under the gloo backend the project tests with; it also adds an all-reduce per
    BatchNorm layer in forward *and* backward of the query encoder and would change the module
    classes of the exported backbone. Shuffle-BN costs one all-gather of the key clips per step
    and touches nothing the backbone checkpoint sees. CVRL has no key encoder: its second view
    is shuffled the same way, and its features are gathered with gradients so the negatives of
    every rank enter the loss. In a single process all of this is the identity (there is no
    other rank to shuffle with). Every rank must use the same per-device batch size (the
    recipe's DataLoader drops the last incomplete batch).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers import initialization as hf_init

from .base import accuracy

logger = logging.getLogger(__name__)


def _world() -> tuple[int, int]:
    """``(world_size, rank)``; ``(1, 0)`` when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


@torch.no_grad()
def concat_all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, in rank order (no gradient).

    Identity in a single process. Every rank must pass the same shape.
    """
    world_size, _ = _world()
    if world_size == 1:
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradients of every rank and returns this rank's slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world_size, rank = _world()
        ctx.rank, ctx.batch = rank, tensor.shape[0]
        gathered = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss depends on this rank's rows
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Like :func:`concat_all_gather` but differentiable: gradients flow back to each rank's slice."""
    world_size, _ = _world()
    if world_size == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


def local_slice(gathered: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a tensor gathered in rank order."""
    world_size, rank = _world()
    if world_size == 1:
        return gathered
    return gathered.chunk(world_size, dim=0)[rank]


@torch.no_grad()
def batch_shuffle(
    x: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Shuffle-BN, step 1: gather ``x`` from all ranks and hand each rank a random slice.

    Returns ``(x_for_this_rank, unshuffle_index)``; ``unshuffle_index`` is ``None`` in a single
    process, where ``x`` is returned unchanged. The permutation is drawn from ``generator`` (on
    ``x``'s device) when given, else from torch's global RNG; rank 0's draw is broadcast.
    """
    world_size, rank = _world()
    if world_size == 1:
        return x, None
    x_all = concat_all_gather(x)
    permutation = torch.randperm(x_all.shape[0], device=x.device, generator=generator)
    dist.broadcast(permutation, src=0)  # every rank must agree on one permutation
    unshuffle = torch.argsort(permutation)
    return x_all[permutation.view(world_size, -1)[rank]], unshuffle


def batch_unshuffle(
    y: torch.Tensor, unshuffle: torch.Tensor | None, differentiable: bool = False
) -> torch.Tensor:
    """Shuffle-BN, step 2: the outputs of *all* ranks' samples, back in rank order.

    Returns ``(world_size * B, ...)``; take :func:`local_slice` for this rank's own samples.
    ``differentiable=True`` keeps gradients (CVRL's second view runs through the online encoder).
    """
    if unshuffle is None:
        return y
    y_all = gather_with_grad(y) if differentiable else concat_all_gather(y)
    return y_all[unshuffle]


class MomentumEncoder(nn.Module):
    """An EMA copy of one or more online modules: ``key = m * key + (1 - m) * online``.

    Built from the online modules *after* their initialisation (a copy, not a fresh init). Its
    parameters never receive gradients; buffers (BatchNorm running statistics) are updated by
    the copy's own forward passes, as in MoCo.
    """

    def __init__(self, *online: nn.Module, momentum: float = 0.999):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}.")
        self.momentum = momentum
        self.encoders = nn.ModuleList(copy.deepcopy(module) for module in online)
        for parameter in self.encoders.parameters():
            parameter.requires_grad_(False)

    def _pairs(self, online: tuple[nn.Module, ...]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if len(online) != len(self.encoders):
            raise ValueError(f"expected {len(self.encoders)} online modules, got {len(online)}.")
        keys = [p for encoder in self.encoders for p in encoder.parameters()]
        queries = [p.detach() for module in online for p in module.parameters()]
        if len(keys) != len(queries):
            raise ValueError("online modules do not match the momentum copy (different parameter count).")
        return keys, queries

    @torch.no_grad()
    def update(self, *online: nn.Module) -> None:
        """One EMA step towards the current online weights."""
        keys, queries = self._pairs(online)
        torch._foreach_lerp_(keys, queries, 1.0 - self.momentum)

    @torch.no_grad()
    def copy_from(self, *online: nn.Module) -> None:
        """Reset the copy to the online weights (and buffers)."""
        for encoder, module in zip(self.encoders, online):
            encoder.load_state_dict(module.state_dict())

    @torch.no_grad()
    def copy_missing_from(self, *online: nn.Module) -> None:
        """Copy the online weights and buffers into every tensor of the copy that was *not* loaded.

        ``from_pretrained`` marks the tensors it loaded (transformers' ``_is_hf_initialized``);
        :func:`transformers.initialization.copy_` skips those. So after loading a checkpoint
        that holds the key encoder, the saved EMA weights stay; after loading one without it
        (a backbone-only checkpoint), the key encoder starts as a copy of the *loaded* backbone.
        Outside ``from_pretrained`` nothing is marked and everything is copied. Every parameter
        of the copy ends without gradient.
        """
        if len(online) != len(self.encoders):
            raise ValueError(f"expected {len(self.encoders)} online modules, got {len(online)}.")
        for encoder, module in zip(self.encoders, online):
            keys, queries = encoder.state_dict(keep_vars=True), module.state_dict(keep_vars=True)
            if keys.keys() != queries.keys():
                raise ValueError("online modules do not match the momentum copy (different state dict keys).")
            for name, key in keys.items():
                hf_init.copy_(key, queries[name].detach())
        # from_pretrained re-creates the parameters it did not load with requires_grad=True.
        for parameter in self.encoders.parameters():
            parameter.requires_grad_(False)

    def forward(self, index: int, *args, **kwargs):
        """Run the ``index``-th copied module."""
        return self.encoders[index](*args, **kwargs)


class FeatureQueue(nn.Module):
    """MoCo-style FIFO of ``size`` L2-normalised ``dim``-d keys.

    ``queue`` ``(size, dim)`` and ``pointer`` are persistent buffers (saved with the model).
    :meth:`enqueue` gathers keys from every rank first (identity in one process), then writes
    them at the pointer with wrap-around; any batch size works, a batch larger than the queue
    keeps its newest ``size`` keys.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size must be >= 1, got {size}.")
        self.size = size
        self.register_buffer("queue", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def init_vssl_buffers(self) -> None:
        """(Re)initialise the queue (random L2-normalised keys) and the pointer (0).

        Called by ``VSSLPreTrainedModel._init_weights``; tensors that ``from_pretrained`` loaded
        are left alone (transformers' guarded :func:`~transformers.initialization.copy_`), so a
        checkpoint's queue survives and a checkpoint without one gets a fresh, valid queue
        instead of the uninitialised memory of a meta-device build.
        """
        fresh = torch.randn(self.queue.shape, device=self.queue.device, dtype=torch.float32)
        hf_init.copy_(self.queue, F.normalize(fresh, dim=1).to(self.queue.dtype))
        hf_init.copy_(self.pointer, torch.zeros((), dtype=self.pointer.dtype, device=self.pointer.device))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, gathered: bool = False) -> None:
        """Replace the oldest entries with ``keys`` (``(B, dim)``; pass ``gathered=True`` if already global)."""
        keys = keys.detach()
        if not gathered:
            keys = concat_all_gather(keys)
        keys = keys[-self.size :].to(self.queue.dtype)
        count = keys.shape[0]
        slots = (self.pointer + torch.arange(count, device=keys.device)) % self.size
        self.queue.index_copy_(0, slots, keys)
        self.pointer.copy_((self.pointer + count) % self.size)

    def forward(self) -> torch.Tensor:
        """A detached copy of the current keys ``(size, dim)``.

        A copy, because :meth:`enqueue` overwrites the buffer in place after the loss was built
        and autograd still needs these values for the backward pass.
        """
        return self.queue.detach().clone()


def cross_entropy_and_accuracy(
    logits: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 cross-entropy of ``logits`` against class indices ``target`` and the detached top-1."""
    logits = logits.float()
    return F.cross_entropy(logits, target), accuracy(logits, target)


def info_nce_logits(
    query: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor | None = None,
    temperature: float = 0.07,
    extra_negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """float32 logits ``(B, 1 [+ 1] [+ K])`` of :func:`info_nce`: the positive in column 0, then
    the per-query extra negative (if any), then the shared negatives."""
    query, positive = query.float(), positive.float()
    columns = [(query * positive).sum(dim=1, keepdim=True)]
    if extra_negatives is not None:
        columns.append((query * extra_negatives.float()).sum(dim=1, keepdim=True))
    if negatives is not None:
        columns.append(query @ negatives.float().t())
    return torch.cat(columns, dim=1) / temperature


def info_nce(
    query: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor | None = None,
    temperature: float = 0.07,
    extra_negatives: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo's InfoNCE: each query against its positive key (index 0) and shared negatives.

    Args:
        query: ``(B, D)`` L2-normalised queries.
        positive: ``(B, D)`` their positive keys.
        negatives: ``(K, D)`` negatives shared by every query (a :class:`FeatureQueue`).
        extra_negatives: ``(B, D)`` one more negative per query (TDL's other interval of the same video).
    Returns:
        ``(loss, top1_accuracy)``; the accuracy is detached.
    """
    logits = info_nce_logits(query, positive, negatives, temperature, extra_negatives)
    return positive_first_cross_entropy(logits)


def positive_first_cross_entropy(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, top1_accuracy)`` of logits whose column 0 is every row's positive."""
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return cross_entropy_and_accuracy(logits, target)


def logit_gap(logits: torch.Tensor, positive: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of (positive logit - mean negative logit), detached, no host sync.

    ``positive`` ``(B,)`` gives each row's positive column (default: column 0, the others
    negatives). A collapsed embedding (every clip mapped to one point) gives 0, whatever the
    temperature; a learning one grows positive. Columns holding the logits' own ``finfo.min``
    (masked self similarities; bf16's under autocast) or ``-inf`` are left out.
    """
    with torch.no_grad():
        masked = torch.finfo(logits.dtype).min  # of the logits' dtype, before the float32 copy
        logits = logits.float()
        rows = torch.arange(logits.shape[0], device=logits.device)
        if positive is None:
            positive = torch.zeros_like(rows)
        valid = logits > masked
        valid[rows, positive] = False
        negative_mean = torch.where(valid, logits, 0.0).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
        return (logits[rows, positive] - negative_mean).mean()


def concentration(embeddings: torch.Tensor) -> torch.Tensor:
    """Norm of the mean of ``(B, D)`` L2-normalised embeddings, detached: 1 when all point one way
    (collapse), about ``1/sqrt(B)`` for spread-out ones."""
    with torch.no_grad():
        return embeddings.float().mean(dim=0).norm()


#: A logged :func:`concentration` above this means the embedding collapsed (every clip at one point).
COLLAPSED_CONCENTRATION = 0.99


def concentration_warning(task: str, logged_metrics: dict[str, float]) -> str | None:
    """``check_collapse`` of the instance-contrastive tasks: a warning when the logged
    ``concentration`` exceeds :data:`COLLAPSED_CONCENTRATION`, else ``None``."""
    value = logged_metrics.get("concentration")
    if value is None or value <= COLLAPSED_CONCENTRATION:
        return None
    return (
        f"{task}'s embedding looks collapsed: the mean embedding has norm {value:.4f} (1 = every clip at one "
        f"point); positive-vs-negative logit gap {logged_metrics.get('logit_gap', float('nan')):.4g}."
    )


def batch_instance_accuracy(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Top-1 instance accuracy of ``(B, D)`` queries against the batch's own ``(B, D)`` keys.

    Query ``i`` counts as right when key ``i`` (its own video) is its most similar key in the
    batch (chance ``1/B``). Unlike the queue accuracy of :func:`info_nce`, it does not drop while
    a MoCo queue's random initial keys are replaced by real, harder ones, so it shows whether
    instance discrimination is learning. Detached, no host sync.
    """
    with torch.no_grad():
        similarity = query.float() @ keys.float().t()
        return accuracy(similarity, torch.arange(query.shape[0], device=query.device))


def symmetric_info_nce_logits(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.1,
    z1_all: torch.Tensor | None = None,
    z2_all: torch.Tensor | None = None,
    offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (2B, 2N), positive_index (2B,))`` of :func:`symmetric_info_nce`; each query's own
    column holds ``finfo(float32).min``."""
    z1_all = z1 if z1_all is None else z1_all
    z2_all = z2 if z2_all is None else z2_all
    batch, total = z1.shape[0], z1_all.shape[0]
    queries = torch.cat([z1, z2]).float()
    keys = torch.cat([z1_all, z2_all]).float()
    logits = queries @ keys.t() / temperature
    rows = torch.arange(batch, device=z1.device) + offset
    self_index = torch.cat([rows, rows + total])
    positive_index = torch.cat([rows + total, rows])
    logits = logits.scatter(1, self_index[:, None], torch.finfo(logits.dtype).min)
    return logits, positive_index


def symmetric_info_nce(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.1,
    z1_all: torch.Tensor | None = None,
    z2_all: torch.Tensor | None = None,
    offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's NT-Xent (CVRL): two views per video, every other clip in the batch a negative.

    ``z1``/``z2`` are this rank's ``(B, D)`` L2-normalised views; ``z1_all``/``z2_all`` the views
    of all ranks ``(N, D)`` (default: the local ones) and ``offset`` this rank's first row in
    them. Each of the ``2B`` local queries scores ``2N - 1`` candidates (itself excluded) and must
    pick the other view of its own video. The loss is the mean over the ``2B`` queries.
    """
    logits, positive_index = symmetric_info_nce_logits(z1, z2, temperature, z1_all, z2_all, offset)
    return cross_entropy_and_accuracy(logits, positive_index)


class MoCoTask:
    """Mixin of the MoCo-style tasks (TDL, RSPNet): a query backbone + heads, their EMA copy, a queue.

    The host class sets ``self.heads`` (an ``nn.ModuleList`` of projection heads on the pooled
    feature) and ``self.settings.momentum``; :meth:`attach_backbone` then builds
    ``self.key_encoder`` as a copy of ``(backbone, *heads)``. Keys are computed under
    ``torch.no_grad`` with shuffle-BN across ranks.
    """

    @classmethod
    def fit_to_dataset(cls, pretext_config: dict[str, Any] | None, num_videos: int) -> dict[str, Any] | None:
        """Cap a default feature queue that is larger than half the training videos (with a warning).

        The study's queues (16384 for RSPNet, 500 for TDL) assume tens of thousands of videos. A
        queue holding more keys than there are videos fills with stale keys of each query's own
        video, which then count as negatives and stop instance discrimination from learning. An
        explicit ``queue_size`` in ``pretext_config`` is never changed.
        """
        default = cls.settings_class().queue_size
        limit = max(1, num_videos // 2)
        if (pretext_config and "queue_size" in pretext_config) or default <= limit:
            return pretext_config
        capped = 1 << (limit.bit_length() - 1)  # largest power of two <= limit
        logger.warning(
            "%s: the default queue of %d keys exceeds half of the %d training videos; using %d "
            "(set --pretext_config '{\"queue_size\": N}' to choose).",
            cls.name,
            default,
            num_videos,
            capped,
        )
        return {**(pretext_config or {}), "queue_size": capped}

    def attach_backbone(self, backbone: nn.Module) -> None:
        self.key_encoder = MomentumEncoder(backbone, *self.heads, momentum=self.settings.momentum)
        # A plain attribute (a tuple is not registered as a submodule): the backbone belongs to
        # VSSLForPretraining; init_vssl_buffers needs it to re-copy the key encoder after loading.
        self._online_backbone = (backbone,)

    @torch.no_grad()
    def init_vssl_buffers(self) -> None:
        """Start the key encoder as a copy of the (initialised or loaded) backbone and heads.

        The model-init hook (``VSSLPreTrainedModel._init_weights``), called on this module after
        its children (the heads) and the backbone (an earlier sibling) are initialised or loaded.
        Key-encoder tensors that ``from_pretrained`` loaded keep their saved EMA values (see
        :meth:`MomentumEncoder.copy_missing_from`). Before :meth:`attach_backbone` there is
        nothing to copy.
        """
        key_encoder = getattr(self, "key_encoder", None)
        online = getattr(self, "_online_backbone", None)
        if key_encoder is not None and online is not None:
            key_encoder.copy_missing_from(online[0], *self.heads)

    def _check_attached(self) -> MomentumEncoder:
        key_encoder = getattr(self, "key_encoder", None)  # registered submodule once attached
        if key_encoder is None:
            raise RuntimeError(
                f"Pretext task {self.name!r} has no momentum encoder: call attach_backbone(backbone) once the "
                "backbone is initialised (VSSLForPretraining does this)."
            )
        return key_encoder

    @torch.no_grad()
    def momentum_step(self, backbone: nn.Module) -> None:
        """EMA update of the key encoder towards ``(backbone, *heads)`` (training only)."""
        self._check_attached().update(backbone, *self.heads)

    @torch.no_grad()
    def encode_keys(
        self, clips: torch.Tensor, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """``(B, T, C, H, W)`` -> one ``(B, dim)`` key per head, from the momentum encoder with
        shuffle-BN (its permutation drawn from ``generator`` when given)."""
        key_encoder = self._check_attached()
        shuffled, unshuffle = batch_shuffle(clips, generator)
        features = key_encoder(0, shuffled, return_dict=True).pooler_output
        keys = [key_encoder(i + 1, features) for i in range(len(self.heads))]
        return [local_slice(batch_unshuffle(k, unshuffle)) for k in keys]
