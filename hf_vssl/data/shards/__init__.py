"""Writing video datasets as WebDataset tar shards that ``datasets`` streams as a Video column.

Layout of ``out_dir``::

    {prefix}-{split}-00000.tar   samples <key>.<ext> (the video file) + <key>.json (metadata)
    ...
    manifest.json                shards per split with counts, per-class counts, label names,
                                 skipped inputs, re-encode / noise settings

Why ``<key>.<ext>``: the ``webdataset`` builder of ``datasets`` (5.2,
``packaged_modules/webdataset``) names a column after everything behind the key's first dot and
makes it a ``datasets.Video`` feature (decoded by torchcodec) when the last extension is one of
``mkv, mp4, avi, mpeg, mov``. So keys must not contain dots, every sample of a dataset must use
the same field name, and ``.webm`` (not in that list) is stored under ``.mkv`` (WebM *is*
Matroska; FFmpeg recognises the content either way). A build with mixed containers uses the most
common one's field for all samples and records each file's real container in its json; decoding
goes by content, never by name. :func:`hf_vssl.data.streaming.load_video_dataset` renames the
field to ``video``.

Every input is validated before it is written (scan of the whole file, decode of its last frame,
header vs content frame count), so truncated or broken files end up in ``ShardReport.skipped``
with a reason instead of failing a training run later.

Re-encoding (:class:`ReencodeOptions`) scales videos to a short side of 128 and a short GOP: a
random clip then needs to decode at most one GOP of lead-in frames. ``benchmarks/data_pipeline.py``
measures the effect; torchcodec's decoder-side resize does the scaling.

One job per module: :mod:`.format` (names, keys, sample metadata), :mod:`.reencode`,
:mod:`.write` (tars, worker pool, manifest), :mod:`.build` (validate + write records),
:mod:`.read` (manifest and samples back), :mod:`.noisy` (noisy copies).
"""

from .build import build_shards
from .format import HF_VIDEO_EXTENSIONS, MANIFEST_FORMAT, MANIFEST_NAME, META_FIELDS, sample_key, video_field
from .noisy import build_noisy_shards, write_noisy_split
from .read import iter_shard_samples, read_manifest
from .reencode import ReencodeOptions, reencode_video
from .write import ShardReport

__all__ = [
    "HF_VIDEO_EXTENSIONS",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "META_FIELDS",
    "ReencodeOptions",
    "ShardReport",
    "build_noisy_shards",
    "build_shards",
    "iter_shard_samples",
    "read_manifest",
    "reencode_video",
    "sample_key",
    "video_field",
    "write_noisy_split",
]
