"""The synthetic corpus: content that makes the study meaningful, determinism, cost, caching."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from torchcodec.decoders import VideoDecoder

from hf_vssl.data import synthetic as S
from hf_vssl.data.transforms.geometry import resize_size

TINY = {"num_classes": 3, "videos_per_class": 4, "clips_per_group": 2, "num_frames": 12, "size": (32, 32)}


def _decode_all(root):
    meta = S.read_metadata(root)
    out = []
    for video in meta["videos"]:
        decoder = VideoDecoder(str(root / video["path"]))
        out.append(decoder.get_frames_at(list(range(decoder.metadata.num_frames))).data.numpy())
    return out


def test_same_seed_same_frames_and_files_different_seed_different(tmp_path):
    a = S.make_synthetic_dataset(tmp_path / "a", "ucf101", seed=5, **TINY)
    b = S.make_synthetic_dataset(tmp_path / "b", "ucf101", seed=5, **TINY)
    c = S.make_synthetic_dataset(tmp_path / "c", "ucf101", seed=6, **TINY)
    frames_a, frames_b, frames_c = _decode_all(a), _decode_all(b), _decode_all(c)
    assert len(frames_a) == 12 and frames_a[0].shape == (12, 3, 32, 32)
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, frames_b))
    assert not any(np.array_equal(x, y) for x, y in zip(frames_a, frames_c))
    for video in S.read_metadata(a)["videos"]:
        assert (a / video["path"]).read_bytes() == (b / video["path"]).read_bytes()
    assert (a / "ucfTrainTestlist/trainlist01.txt").read_bytes() == (
        b / "ucfTrainTestlist/trainlist01.txt"
    ).read_bytes()


def _polar_features(frame: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Rotation-invariant descriptors of the neighbourhood of ``centre`` plus the position itself.

    Angular |FFT| of brightness and saturation on rings around the object: enough to tell the
    shape and texture whatever the object's orientation, and the position would betray a
    motion class whose start position depended on it.
    """
    f = frame.astype(np.float32) / 255
    channels = (f.mean(-1), f.max(-1) - f.min(-1))
    radius = np.arange(12)[:, None]
    theta = np.linspace(0, 2 * np.pi, 32, endpoint=False)[None]
    h, w = f.shape[:2]
    xs = np.clip(np.round(centre[0] + radius * np.cos(theta)), 0, w - 1).astype(int)
    ys = np.clip(np.round(centre[1] + radius * np.sin(theta)), 0, h - 1).astype(int)
    rings = [np.log1p(np.abs(np.fft.rfft(ch[ys, xs], axis=1))).ravel() for ch in channels]
    return np.concatenate([*rings, centre[:2] / w])


def _ridge_accuracy(features: np.ndarray, labels: np.ndarray, num_train: int, num_classes: int) -> float:
    x = np.c_[(features - features.mean(0)) / (features.std(0) + 1e-6), np.ones(len(features))]
    y = np.eye(num_classes)[labels]
    weights = np.linalg.solve(
        x[:num_train].T @ x[:num_train] + 100 * np.eye(x.shape[1]), x[:num_train].T @ y[:num_train]
    )
    return float(((x[num_train:] @ weights).argmax(1) == labels[num_train:]).mean())


def test_single_frame_solves_appearance_but_not_motion():
    """One classifier on first frames: near chance for motion labels, far above it for appearance."""
    rng = np.random.default_rng(0)
    features, motion, appearance = [], [], []
    for i in range(240):
        m, a = i % 10, int(rng.integers(10))
        spec = S.sample_video_spec(
            9,
            i,
            S.MOTION_CLASSES[m],
            S.APPEARANCE_CLASSES[a],
            S.sample_scene(np.random.default_rng([9, i])),
            (64, 64),
        )
        first = S.render_video(spec, 16, (64, 64))[0]
        features.append(_polar_features(first, S.object_track(spec, 16)[0]))
        motion.append(m)
        appearance.append(a)
    features = np.stack(features)
    motion_acc = _ridge_accuracy(features, np.array(motion), 160, 10)
    appearance_acc = _ridge_accuracy(features, np.array(appearance), 160, 10)
    assert appearance_acc > 0.6, appearance_acc  # chance is 0.1
    assert motion_acc < 0.25, motion_acc


def test_motion_classes_move_as_named():
    size, frames = (64, 64), 32
    scene = S.sample_scene(np.random.default_rng(0))

    def track(motion, index):
        spec = S.sample_video_spec(0, index, motion, "solid_disc", scene, size)
        return spec, S.object_track(spec, frames, size)

    for index in range(6):
        for motion, axis, sign in (
            ("move_left", 0, -1),
            ("move_right", 0, 1),
            ("move_up", 1, -1),
            ("move_down", 1, 1),
        ):
            _, tr = track(motion, index)
            step = np.diff(tr[:, axis])
            step = step[np.abs(step) < 10]  # drop the wrap-around jump
            assert np.sign(np.median(step)) == sign, motion
        for motion, sense in (("orbit_cw", 1), ("orbit_ccw", -1)):
            spec, tr = track(motion, index)
            centre = np.asarray(spec["primary"]["start"])
            d = tr[:, :2] - centre
            cross = d[:-1, 0] * d[1:, 1] - d[:-1, 1] * d[1:, 0]  # > 0: clockwise on a y-down screen
            assert np.sign(np.median(cross)) == sense, motion
        _, fast = track("move_fast", index)
        _, slow = track("move_left", index)
        assert np.median(np.abs(np.diff(fast[:, :2], axis=0)).sum(1)) > 2 * np.median(
            np.abs(np.diff(slow[:, :2], axis=0)).sum(1)
        )


def test_rendered_object_follows_its_track_and_flashes_in_order():
    spec = S.sample_video_spec(
        1, 3, "flash_right_first", "solid_square", S.sample_scene(np.random.default_rng(1)), (64, 64)
    )
    video = S.render_video(spec, 48, (64, 64)).astype(np.float32)
    tr = S.object_track(spec, 48)
    colour = np.asarray(spec["primary"]["colour"]) * 255
    primary_is_left = spec["primary"]["start"][0] < spec["secondary"]["start"][0]
    at = video[np.arange(48), np.round(tr[:, 1]).astype(int), np.round(tr[:, 0]).astype(int)]
    flashing = np.abs(at - colour).max(1) > 60  # flashes whiten the object
    traj = spec["trajectory"]
    cycle = (np.arange(48) - traj["flash_phase"]) % traj["flash_period"]
    # right flashes first: the primary's flash opens each pair exactly when it is the right one
    offset = traj["flash_gap"] if primary_is_left else 0
    expected = (cycle >= offset) & (cycle < offset + traj["flash_duration"])
    assert expected.sum() >= 48 // traj["flash_period"] * traj["flash_duration"]
    np.testing.assert_array_equal(flashing, expected)


def test_every_8_frame_window_shows_the_flash_order():
    """Short clips can tell the two flash classes apart: each 8-frame window holds both flashes."""
    for index in range(20):
        spec = S.sample_video_spec(
            2, index, "flash_left_first", "solid_disc", S.sample_scene(np.random.default_rng(2)), (64, 64)
        )
        traj = spec["trajectory"]
        cycle = (np.arange(64) - traj["flash_phase"]) % traj["flash_period"]
        first = cycle < traj["flash_duration"]
        second = (cycle >= traj["flash_gap"]) & (cycle < traj["flash_gap"] + traj["flash_duration"])
        for start in range(64 - 8 + 1):
            assert first[start : start + 8].any() and second[start : start + 8].any()


def test_small_corpus_time_size_and_metadata(tmp_path):
    start = time.perf_counter()
    root = S.make_synthetic_dataset(
        tmp_path / "c",
        "ucf101",
        seed=0,
        num_classes=4,
        videos_per_class=9,
        num_frames=32,
        size=(64, 64),
        num_workers=1,
    )
    elapsed = time.perf_counter() - start
    size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
    assert elapsed < 30, elapsed  # ~1.5 s on an idle core
    assert size_mb < 3, size_mb
    meta = S.read_metadata(root)
    assert S.is_complete(root) and meta["folds"] == [1, 2, 3]
    assert meta["classes"]["motion"] == list(S.MOTION_CLASSES[:4])
    assert meta["classes"]["appearance"] == list(S.APPEARANCE_CLASSES)
    videos = meta["videos"]
    assert len(videos) == 36 and {v["motion"] for v in videos} == set(S.MOTION_CLASSES[:4])
    # the other label set is spread over every class: no motion class is tied to an appearance
    for cls in S.MOTION_CLASSES[:4]:
        assert len({v["appearance"] for v in videos if v["motion"] == cls}) == 9
    for fold in ("1", "2", "3"):  # a group (shared scene) never straddles train and test
        train = {(v["motion"], v["group"]) for v in videos if v["splits"][fold] == "train"}
        test = {(v["motion"], v["group"]) for v in videos if v["splits"][fold] == "test"}
        assert train and test and not train & test
    assert len({v["splits"]["1"] + v["splits"]["2"] + v["splits"]["3"] for v in videos}) > 1
    # group g of every class shows one scene: the background carries no label
    for group in {v["group"] for v in videos}:
        scenes = {json.dumps(v["spec"]["scene"]) for v in videos if v["group"] == group}
        assert len(scenes) == 1 and len({v["motion"] for v in videos if v["group"] == group}) == 4
    assert len({json.dumps(v["spec"]["scene"]) for v in videos}) == len({v["group"] for v in videos})


def test_refuses_to_overwrite_unknown_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        S.make_synthetic_dataset(tmp_path, "ucf101", overwrite=True, **TINY)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="layout"):
        S.make_synthetic_dataset(tmp_path / "x", "ucf102", **TINY)
    with pytest.raises(ValueError, match="label_set"):
        S.make_synthetic_dataset(tmp_path / "x", "ucf101", label_set="colour", **TINY)


def test_default_corpus_cached_and_redone_when_incomplete(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_VSSL_CACHE", str(tmp_path / "cache"))
    first = S.get_default_corpus(layout="hmdb51", **TINY)
    assert first.parent == tmp_path / "cache" / "synthetic" and S.is_complete(first)
    assert json.loads((first / S.COMPLETE_MARKER).read_text())["layout"] == "hmdb51"

    calls = []
    real = S.make_synthetic_dataset
    monkeypatch.setattr(S.cache, "make_synthetic_dataset", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert S.get_default_corpus(layout="hmdb51", **TINY) == first and not calls  # reused
    (first / S.COMPLETE_MARKER).unlink()  # as if interrupted before the marker
    assert S.get_default_corpus(layout="hmdb51", **TINY) == first and calls == [1]
    assert S.is_complete(first)
    assert not [p for p in first.parent.iterdir() if ".tmp-" in p.name]


# -- corpus v3: motion resolvable at the default 8x56x56 clip, motion labels still appearance-free --

MOVING = ("move_left", "move_right", "move_up", "move_down", "move_fast", "orbit_cw", "orbit_ccw", "swing")


def _model_crop(video: np.ndarray) -> np.ndarray:
    """The pixels of the default 56-px eval clip: frames resized to 64 (a no-op here), centre crop."""
    assert resize_size(56) == 64 and video.shape[1:3] == (64, 64)
    return video[:, 4:60, 4:60].astype(np.float32) / 255


def _centroids(video: np.ndarray, spec: dict, track: np.ndarray) -> np.ndarray:
    """Measured centre (x, y, in 64-px frame coordinates) of the primary object in each 56-px
    frame: the centroid of the pixels whose colour points the object's way (the speckle changes
    brightness, not hue), searched within the object's reach around its track."""
    colour = np.asarray(spec["primary"]["colour"], np.float32)
    frames = _model_crop(video)
    norm = np.linalg.norm(frames, axis=-1)
    cosine = (frames @ colour) / (norm * np.linalg.norm(colour) + 1e-6)
    mask = (cosine > 0.985) & (norm > 0.5 * np.linalg.norm(colour))
    gy, gx = np.mgrid[0:56, 0:56] + 4
    reach = spec["primary"]["radius"] + 6
    mask &= np.hypot(gx - track[:, 0, None, None], gy - track[:, 1, None, None]) < reach
    weight = np.maximum(mask.sum((1, 2)), 1)  # frames without the object are never compared
    return np.stack([(mask * gx).sum((1, 2)) / weight, (mask * gy).sum((1, 2)) / weight], 1)


def test_v3_speeds_in_design_range_and_each_class_twice_as_fast_at_2x():
    """Per class, the primary's median speed (pixels per frame at the model's 56 px) lies in the
    design range and spans less than a factor of 2: every 2x clip is faster than every 1x clip
    of its class, so playback speed is visible (v2's wrap speeds 0.6-1.0 px, swing 1.4-3.3 px)."""
    assert S.CORPUS_VERSION == 3
    scene = S.sample_scene(np.random.default_rng(0))
    for motion in MOVING:
        speeds = []
        for index in range(24):
            spec = S.sample_video_spec(4, index, motion, "solid_disc", scene, (64, 64))
            track = S.object_track(spec, 64, (64, 64))
            step = np.hypot(*np.diff(track[:, :2], axis=0).T)
            speeds.append(np.median(step[step < 20]))  # drop the wrap-around jump
        assert min(speeds) > 1.1 and max(speeds) < 4.6, (motion, min(speeds), max(speeds))
        assert max(speeds) < 2 * min(speeds), (motion, min(speeds), max(speeds))


def test_v3_measured_object_speed_at_56px_matches_its_track():
    """Pixels, not parameters: the primary object's measured per-frame displacement in the 56-px
    clip the model sees follows its track and lies in the design range (1.2-4.4 px per frame)."""
    scene = S.sample_scene(np.random.default_rng(3))
    for index, motion in enumerate(("move_right", "move_down", "move_fast", "orbit_cw", "swing")):
        spec = S.sample_video_spec(6, index, motion, "solid_disc", scene, (64, 64))
        track = S.object_track(spec, 64, (64, 64))
        margin = spec["primary"]["radius"] + 1
        inside = np.all((track[:, :2] > 4 + margin) & (track[:, :2] < 60 - margin), axis=1)
        measured = _centroids(S.render_video(spec, 64, (64, 64)), spec, track)
        both = inside[1:] & inside[:-1]
        assert both.sum() >= 8, (motion, both.sum())
        step = np.diff(measured, axis=0)[both]
        np.testing.assert_allclose(step, np.diff(track[:, :2], axis=0)[both], atol=0.5, err_msg=motion)
        speed = np.median(np.hypot(*step.T))
        assert 1.0 < speed < 4.8, (motion, speed)


def test_v3_background_pan_is_class_free():
    """Every video's background slides 0.5-0.65 px per frame whatever its motion class (a speed
    cue no class owns), with the same spread in every class."""
    lo, hi = S.SPEED_RANGES["pan"]
    scene = S.sample_scene(np.random.default_rng(0))
    means = []
    for motion in S.MOTION_CLASSES:
        speeds = [
            np.hypot(*S.sample_video_spec(7, i, motion, "solid_disc", scene, (64, 64))["pan"]["velocity"])
            for i in range(60)
        ]
        assert lo <= min(speeds) and max(speeds) <= hi, motion
        means.append(np.mean(speeds))
    assert np.ptp(means) < 0.03, means  # the standard error of one class's mean is ~0.006


def test_v3_single_frame_statistics_do_not_tell_motion_classes_apart():
    """Global statistics of one frame (mean colour, contrast, edge energy: what speckle, pan and
    texture could change) carry no motion label: a ridge classifier on them stays near chance."""
    rng = np.random.default_rng(1)
    features, motion = [], []
    for i in range(300):
        m = i % 10
        spec = S.sample_video_spec(
            11, i, S.MOTION_CLASSES[m], S.APPEARANCE_CLASSES[int(rng.integers(10))],
            S.sample_scene(np.random.default_rng([11, i % 7])), (64, 64),
        )  # fmt: skip
        frame = S.render_video(spec, 12, (64, 64))[int(rng.integers(12))].astype(np.float32) / 255
        gx, gy = np.diff(frame, axis=1), np.diff(frame, axis=0)
        features.append(
            np.r_[
                frame.mean((0, 1)),
                frame.std((0, 1)),
                np.abs(gx).mean(),
                np.abs(gy).mean(),
                (frame > 0.9).mean(),
            ]
        )
        motion.append(m)
    accuracy = _ridge_accuracy(np.stack(features), np.array(motion), 200, 10)
    assert accuracy < 0.22, accuracy  # chance 0.1; 100 held-out frames
