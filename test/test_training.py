"""The trainer, its data pipeline and its evaluation on tiny synthetic sets (CPU, seconds each)."""

import json
import logging
import re

import numpy as np
import pytest
import torch

from duse_ros.checkpoint import read_config
from duse_ros.io.clip_lists import ClipEntry, read_clip_list
from duse_ros.models import build_model
from training import count_params, crossval, evaluate, train
from training.augment import ClipAugment
from training.datasets import (
    DatasetError,
    VideoClipDataset,
    audio_path,
    read_audio,
    read_clip,
    sample_frames,
    segment_indices,
    stratified_split,
    write_wav,
)
from training.layouts import LAYOUTS, load_split, resolve_layout
from training.synthetic import ORDERS, make_av_dataset, make_motion_dataset

logging.getLogger().setLevel(logging.ERROR)
DFEW = list(build_model("tiny-random-video").class_names)


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    """7 classes x 3 clips of 32x32, three folds: fold 1 tests 7 clips, trains on 14 (7 of them validation)."""
    return make_motion_dataset(tmp_path_factory.mktemp("motion"), clips_per_class=3, size=32, folds=3)


def run(motion, out_dir, *extra):
    return train.main(
        [
            "--config",
            "training/configs/smoke_motion.yaml",
            "--data",
            str(motion),
            "--out-dir",
            str(out_dir),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--progress",
            "false",
            "--tensorboard",
            "false",
            "--val-fraction",
            "0.5",
            "--set",
            "data.folds=3",
            *extra,
        ]
    )


# ---------------------------------------------------------------------------------------------- sampling
def test_segment_sampling_for_short_exact_and_long_clips():
    rng = np.random.default_rng(0)
    # exact: a 2 s window of a 2 s clip at 8 fps has 16 frames, one per segment
    assert sample_frames(16, 16, 8.0, 2.0, train=False) == list(range(16))
    assert sample_frames(16, 16, 8.0, 2.0, train=True, rng=rng) == list(range(16))
    # short: 5 frames spread over 16 segments, in order, every frame used
    short = sample_frames(5, 16, 8.0, 2.0, train=False)
    assert len(short) == 16 and short == sorted(short) and set(short) == set(range(5))
    assert sample_frames(1, 16, 8.0, 2.0, train=True, rng=rng) == [0] * 16
    # long: 100 frames at 25 fps, a 2 s window = 50 frames; evaluation takes the centred window's
    # segment centres, training a random window with one random frame per segment
    assert sample_frames(100, 16, 25.0, 2.0, train=False) == [25 + i for i in segment_indices(50, 16, False)]
    for _ in range(20):
        picked = sample_frames(100, 16, 25.0, 2.0, train=True, rng=rng)
        assert picked == sorted(picked) and picked[-1] - picked[0] < 50 and 0 <= picked[0] and picked[-1] < 100
    # span None: the whole clip (the papers' sampling)
    assert sample_frames(160, 16, 25.0, None, train=False) == list(range(5, 160, 10))


def test_augmentation_is_one_draw_for_the_whole_clip():
    spec = build_model("duse-tiny").input_spec
    frame = np.random.default_rng(1).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    out = ClipAugment()([frame] * 16, spec, np.random.default_rng(3))
    assert out.shape == (16, 3, 32, 32)
    assert all(torch.equal(out[0], out[t]) for t in range(16)), "identical frames must stay identical"
    other = ClipAugment()([frame] * 16, spec, np.random.default_rng(4))
    assert not torch.allclose(out, other), "different draws must differ"
    with pytest.raises(ValueError, match="unknown options .'rotate'."):
        ClipAugment.from_dict({"rotate": 5})


# ---------------------------------------------------------------------------------------------- annotation and data
def test_a_broken_annotation_line_is_named(tmp_path):
    (tmp_path / "a.csv").write_text("video_name,label\n# comment\n1,3\n\n2 40 happy\n3,0\n")
    entries = read_clip_list(tmp_path / "a.csv", tmp_path / "clips", 1, DFEW, "{:05d}", skip_labels=[0])
    assert [(e.path.name, e.label) for e in entries] == [("00001", 2), ("00002", 0)]
    assert entries[1].source == f"{tmp_path / 'a.csv'}:5"
    (tmp_path / "bad.txt").write_text("a 1\nb joyful\n")
    with pytest.raises(DatasetError, match=r"bad.txt:2: label 'joyful' is neither a number nor a class name"):
        read_clip_list(tmp_path / "bad.txt", class_names=DFEW)
    (tmp_path / "range.txt").write_text("a 1\nb 9\n")
    with pytest.raises(DatasetError, match=r"range.txt:2: label 9 is outside 1..7"):
        read_clip_list(tmp_path / "range.txt", class_names=DFEW)
    (tmp_path / "short.txt").write_text("a 1\nb\n")
    with pytest.raises(DatasetError, match=r"short.txt:2: expected"):
        read_clip_list(tmp_path / "short.txt", class_names=DFEW)


def test_missing_clip_is_named_with_its_annotation_line(motion, tmp_path):
    layout = resolve_layout({"layout": "dfew", "fps": 8.0, "folds": 3})
    ann = motion / LAYOUTS["dfew"]["train_ann"].format(fold=2)
    text = ann.read_text().splitlines()
    broken = tmp_path / "broken"
    (broken / ann.relative_to(motion)).parent.mkdir(parents=True)
    (broken / ann.relative_to(motion)).write_text("\n".join(text[:3] + ["999,1"]) + "\n")
    (broken / "Clip").symlink_to(motion / "Clip")
    (broken / layout["test_ann"].format(fold=2)).parent.mkdir(parents=True)
    (broken / layout["test_ann"].format(fold=2)).write_text((motion / layout["test_ann"].format(fold=2)).read_text())
    with pytest.raises(DatasetError, match=r"set_2.csv:4: clip .*00999 does not exist"):
        train.main(
            [
                "--config",
                "training/configs/smoke_motion.yaml",
                "--data",
                str(broken),
                "--fold",
                "2",
                "--set",
                "data.folds=3",
                "--out-dir",
                str(tmp_path / "out"),
                "--epochs",
                "0",
                "--tensorboard",
                "false",
                "--val-fraction",
                "0.3",
            ]
        )


def test_motion_set_frames_carry_no_class_but_their_order_does(motion):
    entries = load_split(motion, resolve_layout({"layout": "dfew", "folds": 3}), "test", 1, DFEW)
    assert sorted(e.label for e in entries) == list(range(7))
    assert all(sorted(order) == list(range(16)) for order in ORDERS) and len({tuple(o) for o in ORDERS}) == 7
    for e in entries:
        frames, _, _ = read_clip(e.path, 16, train=False, fps=8.0, span_s=2.0)
        rows = [int(np.argmax(f.sum(axis=(1, 2)))) for f in frames]  # the bar's row in each frame
        # the bar visits the 16 heights in its class's order (the same 16 heights in every class)
        assert np.corrcoef(rows, ORDERS[e.label])[0, 1] > 0.95, (e.label, rows)


def test_validation_split_is_stratified_and_never_touches_the_test_split(motion):
    layout = resolve_layout({"layout": "dfew", "folds": 3})
    for fold in (1, 2, 3):
        fold_train = load_split(motion, layout, "train", fold, DFEW)
        test = load_split(motion, layout, "test", fold, DFEW)
        kept, val = stratified_split(fold_train, 0.3, seed=5)
        assert {e.key for e in val}.isdisjoint(e.key for e in test)
        assert {e.key for e in val}.isdisjoint(e.key for e in kept)
        assert len(kept) + len(val) == len(fold_train)
        assert sorted({e.label for e in val}) == list(range(7))  # every class is validated
        assert stratified_split(fold_train, 0.3, seed=5)[1] == val  # seeded
    assert stratified_split(fold_train, 0.3, seed=6)[1] != val


def test_audio_comes_with_the_sampled_frames(tmp_path):
    root = make_av_dataset(tmp_path, clips_per_class=2, num_classes=2, size=16, seconds=2.0, folds=2)
    spec = build_model("tiny-random-av").input_spec
    entries = read_clip_list(root / "set_1" / "train.txt", root, class_names=["a", "b"])
    dataset = VideoClipDataset(entries, spec, 2, train=False, fps=8.0, span_s=2.0)
    item = dataset[0]
    assert item["audio"].shape == (32000,) and item["video"].shape == (16, 3, 112, 112)
    samples = read_audio(entries[0].path, 16000)
    # the 2 s before the last sampled frame (1.875 s into a 2 s clip at 8 fps), as the node cuts it
    assert samples.shape == (32000,) and not item["audio"][:2000].any()
    assert np.allclose(item["audio"][2000:].numpy(), samples[:30000], atol=1e-6)


def _clip_with_audio(root, name: str, frames: int, fps: float, rate: int = 16000):
    """A frame folder of `frames` frames at `fps` and a noise .wav as long as the frames."""
    import cv2

    folder = root / name
    folder.mkdir(parents=True)
    for i in range(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((8, 8, 3), i, np.uint8))
    noise = np.random.default_rng(1).uniform(-0.9, 0.9, int(frames / fps * rate))
    write_wav(audio_path(folder), noise, rate)
    return ClipEntry(folder, 0, name)


def test_audio_s_ends_at_the_last_sampled_frame_zero_padded_in_front(tmp_path):
    """5.12 s of audio behind a 2 s span, as the node will hear it: the stretch that ends at
    the last sampled frame, with zeros before the file's start."""
    spec = build_model("tiny-random-av").input_spec
    long, short = _clip_with_audio(tmp_path, "long", 80, 8.0), _clip_with_audio(tmp_path, "short", 24, 8.0)
    dataset = VideoClipDataset([long, short], spec, 1, train=False, fps=8.0, span_s=2.0, audio_s=5.12)
    # 10 s clip: frames 32..47 sampled (4.0 s to 5.875 s): audio from 0.755 s to 5.875 s.
    assert read_clip(long.path, 16, train=False, fps=8.0, span_s=2.0)[1:] == (4.0, 5.875)
    samples = read_audio(long.path, 16000)
    np.testing.assert_array_equal(dataset[0]["audio"].numpy(), samples[12080:94000])
    # 3 s clip: frames 4..19 (0.5 s to 2.375 s): the 5.12 s reach 2.745 s before the file.
    samples = read_audio(short.path, 16000)
    audio = dataset[1]["audio"].numpy()
    assert audio.shape == (81920,) and not audio[:43920].any()
    np.testing.assert_array_equal(audio[43920:], samples[:38000])


@pytest.mark.parametrize("train_mode", [False, True])
def test_audio_as_long_as_the_span_ends_at_the_last_sampled_frame(tmp_path, train_mode):
    """audio_s None (= the 2 s span): the 2 s before the last sampled frame, wherever the draw put it."""
    spec = build_model("tiny-random-av").input_spec
    entry = _clip_with_audio(tmp_path, "clip", 80, 8.0)
    dataset = VideoClipDataset([entry], spec, 1, train=train_mode, fps=8.0, span_s=2.0, seed=3)
    for epoch in range(3):
        dataset.set_epoch(epoch)
        rng = np.random.default_rng([3, epoch, 0])  # the dataset's draw for (seed, epoch, index)
        end = round(read_clip(entry.path, 16, train_mode, rng, 8.0, 2.0)[2] * 16000)
        assert end >= 32000  # this clip has 2 s of audio before any window's last frame
        np.testing.assert_array_equal(dataset[0]["audio"].numpy(), read_audio(entry.path, 16000)[end - 32000 : end])


def test_a_recipe_without_audio_s_trains_on_the_audio_length_the_model_reads(tmp_path):
    """The model's own audio_s (what the node will cut for it) beats the span; the recipe's beats both."""
    entry = _clip_with_audio(tmp_path, "clip", 24, 8.0)
    splits = train.Splits(1, ["a"], [entry], [], [entry])
    context = train.Context(0, 1, torch.device("cpu"), False, False, 0, tmp_path)
    model = build_model("tiny-random-av", audio_s=3.0)
    lengths = []
    for audio_s in (None, 5.12):
        recipe = train.parse_args(["--config", "training/configs/smoke_bhgap_av.yaml", "--data", "x"])
        recipe["audio_s"] = audio_s
        loaders = train.make_loaders(recipe, splits, model, 8.0, 2.0, context)
        lengths.append((loaders.train_set.audio_len, loaders.test.dataset.audio_len))
    assert lengths == [(48000, 48000), (81920, 81920)]


# ---------------------------------------------------------------------------------------------- training
def test_one_step_changes_only_trainable_parameters():
    model = build_model("duse-tiny")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    step = train.TrainStep(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    logits, aux, _ = step(torch.randn(2, 16, 3, 32, 32), None)
    (torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])) + aux).backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed <= trainable, f"frozen parameters changed: {sorted(changed - trainable)[:5]}"
    # Every trainable tensor with a gradient moved (LSEA's norm waits for its zero-initialised
    # attention output to move first, as designed).
    assert changed == {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert {"prompts.text", "prompts.mlp.0.weight", "prompts.mlp.2.weight", "lsea.linear.weight"} <= changed


def test_zero_epochs_scores_the_initial_weights(motion, tmp_path):
    summary = run(motion, tmp_path, "--epochs", "0")
    assert summary["best"] is None and summary["history"] == []
    assert (tmp_path / "best.json").is_file() and (tmp_path / "test.md").is_file()


def test_a_crash_in_the_first_epoch_leaves_no_checkpoint(motion, tmp_path, monkeypatch):
    def crash(self, epoch, epochs):
        raise MemoryError("out of memory in epoch 1")

    monkeypatch.setattr(train.Trainer, "run_epoch", crash)
    with pytest.raises(MemoryError):
        run(motion, tmp_path, "--epochs", "2")
    assert not (tmp_path / "best.json").exists(), "the initial weights must not look like a trained checkpoint"


@pytest.mark.slow  # trains six epochs and evaluates
def test_seeded_runs_repeat_and_resume_continues_the_same_run(motion, tmp_path):
    a = run(motion, tmp_path / "a", "--epochs", "2")
    b = run(motion, tmp_path / "b", "--epochs", "2")
    assert a["history"] and [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert a["test"] == b["test"]
    # A different seed initialises (and samples) differently.
    c = run(motion, tmp_path / "c", "--epochs", "1", "--seed", "1")
    assert c["history"][0]["train_loss"] != a["history"][0]["train_loss"]
    # One epoch, then resume for the second: the same numbers as the uninterrupted run.
    run(motion, tmp_path / "r", "--epochs", "1")
    resumed = train.main(
        [
            "--config",
            "training/configs/smoke_motion.yaml",
            "--data",
            str(motion),
            "--resume",
            "--out-dir",
            str(tmp_path / "r"),
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--progress",
            "false",
            "--tensorboard",
            "false",
            "--val-fraction",
            "0.5",
            "--set",
            "data.folds=3",
        ]
    )
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in a["history"]]

    # The checkpoint carries the span, the recipe and the selection; evaluate.py re-scores it alike.
    config = read_config(tmp_path / "a" / "best.json")
    assert config["span_s"] == 2.0 and config["training"]["span_s"] == 2.0
    assert config["training"]["epoch"] == a["best"]["epoch"]
    report = evaluate.main(
        [
            "--checkpoint",
            str(tmp_path / "a" / "best.json"),
            "--data",
            str(motion),
            "--workers",
            "0",
            "--no-progress",
            "--out-dir",
            str(tmp_path / "eval"),
        ]
    )
    assert (report["uar"], report["war"]) == (a["test"]["uar"], a["test"]["war"])
    assert (tmp_path / "eval" / "test.md").read_text().count("|") > 10
    assert (tmp_path / "eval" / "test_confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "a" / "test.json").read_text())["confusion"] == a["test"]["confusion"]


@pytest.mark.slow  # the cross-validation tool over three folds
def test_crossval_summarises_every_fold(motion, tmp_path, capsys):
    result = crossval.main(
        [
            "--config",
            "training/configs/smoke_motion.yaml",
            "--data",
            str(motion),
            "--out-dir",
            str(tmp_path),
            "--epochs",
            "0",
            "--batch-size",
            "8",
            "--progress",
            "false",
            "--tensorboard",
            "false",
            "--val-fraction",
            "0.5",
            "--set",
            "data.folds=3",
        ]
    )
    assert [r["fold"] for r in result["folds"]] == [1, 2, 3]
    uar = np.array([r["uar"] for r in result["folds"]])
    assert result["uar_mean"] == pytest.approx(uar.mean()) and result["uar_std"] == pytest.approx(uar.std())
    table = (tmp_path / "crossval.md").read_text()
    assert "| mean +- std |" in table and table.count("\n| ") >= 4
    assert "3 folds: UAR" in capsys.readouterr().out


def test_count_params_needs_no_weights(capsys):
    rows = {
        r["name"]: r
        for r in count_params.main(["duse-vitb16-normal", "duse-vitl14-normal", "duse-vitb16-coop-avgpool"])
    }
    b16 = rows["duse-vitb16-normal"]
    assert (b16["M"], b16["M_V"], b16["prompts"], b16["frozen"]) == (4, 4, 4 * 4 * 512, 149_620_737)
    assert b16["mlp"] == (512 * 512 + 512) + (512 * 768 + 768)
    assert b16["trainable"] == b16["prompts"] + b16["mlp"] + b16["lsea"]
    assert (rows["duse-vitl14-normal"]["M"], rows["duse-vitl14-normal"]["M_V"]) == (4, 8)
    assert rows["duse-vitb16-coop-avgpool"]["trainable"] == 4 * 512
    assert "duse-vitl14-normal" in capsys.readouterr().out


def test_audio_is_read_from_a_video_file(tmp_path):
    """MAFW's clips carry their audio: PyAV decodes it, downmixes it and resamples it to 16 kHz."""
    av = pytest.importorskip("av", reason="PyAV reads the audio of video files")
    path = tmp_path / "clip.mp4"
    rate, tone = 44100, 440.0
    stereo = np.stack([np.sin(2 * np.pi * tone * np.arange(rate) / rate)] * 2).astype(np.float32) * 0.5
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(stereo.reshape(1, -1, order="F"), format="flt", layout="stereo")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    samples = read_audio(path, 16000)
    assert abs(samples.size - 16000) < 3000  # 1 s (the codec pads a little)
    spectrum = np.abs(np.fft.rfft(samples[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - tone) < 5  # the tone survives decode and resampling


# ---------------------------------------------------------------------------------------------- protocol options
@pytest.mark.slow  # trains four epochs
def test_val_fraction_zero_trains_on_the_whole_fold_and_keeps_the_named_epoch(motion, tmp_path):
    last = run(
        motion, tmp_path / "last", "--epochs", "2", "--val-fraction", "0", "--select", "last",
        "--scheduler", "cosine_epoch", "--lr", "0.01",
    )  # fmt: skip
    assert [h["epoch"] for h in last["history"]] == [1, 2] and "val_uar" not in last["history"][0]
    assert [h["lr"] for h in last["history"]] == pytest.approx([0.01, 0.005])  # cosine_epoch: set once per epoch
    assert last["best"]["epoch"] == 2
    config = read_config(tmp_path / "last" / "best.json")
    assert config["training"]["splits"] == {"train": 14, "val": 0, "test": 7}  # the whole training fold
    fixed = run(motion, tmp_path / "fixed", "--epochs", "2", "--val-fraction", "0", "--select", "1")
    assert fixed["best"]["epoch"] == 1 and read_config(tmp_path / "fixed" / "best.json")["training"]["epoch"] == 1
    with pytest.raises(train.RecipeError, match="val_fraction 0 holds no validation clips"):
        run(motion, tmp_path / "bad", "--val-fraction", "0", "--select", "uar")


def test_batch_size_is_global_and_divided_among_processes():
    assert train.per_process_batch(16, 1) == 16 and train.per_process_batch(16, 4) == 4
    with pytest.raises(train.RecipeError, match="batch_size 16 is the global batch"):
        train.per_process_batch(16, 3)


def test_batch_size_recorded_per_process(motion, tmp_path):
    run(motion, tmp_path, "--epochs", "0")
    assert read_config(tmp_path / "best.json")["training"]["batch_size"] == {"global": 4, "per_process": 4}


def test_schedule_kinds():
    steps, epochs = 10, 4
    per_step = [train.lr_factor("cosine", s, steps, epochs, 0) for s in range(steps * epochs)]
    per_epoch = [train.lr_factor("cosine_epoch", s, steps, epochs, 0) for s in range(steps * epochs)]
    assert per_step[0] == 1.0 and per_step[-1] < 0.01 and all(a > b for a, b in zip(per_step, per_step[1:]))
    # per epoch: constant within an epoch, half a cosine across the epochs
    assert [per_epoch[e * steps] for e in range(epochs)] == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466])
    assert all(len(set(per_epoch[e * steps : (e + 1) * steps])) == 1 for e in range(epochs))
    assert {train.lr_factor("none", s, steps, epochs, 0) for s in range(40)} == {1.0}
    assert train.lr_factor("cosine_epoch", 4, steps, epochs, 1) == 0.5  # warm-up first, linear


def test_unknown_schedule_is_refused_before_anything_loads():
    recipe = train.load_recipe("training/configs/smoke_motion.yaml")
    with pytest.raises(train.RecipeError, match="scheduler 'step'"):
        train.check_recipe({**recipe, "scheduler": "step"}, world=1)


def test_a_random_backbone_is_refused_unless_allowed(motion, tmp_path):
    args = ["--model", "duse-tiny", "--set", "allow_random_backbone=false", "--epochs", "0"]
    with pytest.raises(
        train.RecipeError, match=r"duse-tiny\+random-clip: no clip_weights given.*--allow-random-backbone"
    ):
        run(motion, tmp_path / "refused", *args)
    assert not (tmp_path / "refused" / "best.json").exists()
    assert run(motion, tmp_path / "allowed", *args, "--allow-random-backbone")["best"] is None
    assert train.parse_args(["--data", "x"])["allow_random_backbone"] is False
    # a model trained from scratch has no frozen backbone to refuse
    assert (
        run(
            motion,
            tmp_path / "scratch",
            "--model",
            "tiny-random-video",
            "--set",
            "allow_random_backbone=false",
            "--epochs",
            "0",
            "--set",
            "model_overrides.image_size=32",
        )["best"]
        is None
    )


def _copy_motion(motion, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(motion, copy)
    return copy


def test_a_corrupt_test_clip_stops_training_before_the_first_epoch(motion, tmp_path):
    data = _copy_motion(motion, tmp_path)
    test_ann = data / LAYOUTS["dfew"]["test_ann"].format(fold=1)
    clip = test_ann.read_text().splitlines()[1].split(",")[0]
    frame = sorted((data / "Clip" / "clip_224x224" / f"{int(clip):05d}").iterdir())[7]  # one the evaluation samples
    frame.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a PNG signature, then garbage
    with pytest.raises(DatasetError, match=rf"1 of 21 clips cannot be read; the first: .*set_1.csv:2: .*{frame.name}"):
        run(data, tmp_path / "out", "--epochs", "3")
    assert not (tmp_path / "out" / "best.json").exists(), "no checkpoint may be left that loads as trained"


def test_a_non_image_frame_anywhere_in_a_training_clip_is_found(motion, tmp_path):
    data = _copy_motion(motion, tmp_path)
    train_ann = data / LAYOUTS["dfew"]["train_ann"].format(fold=1)
    clip = train_ann.read_text().splitlines()[3].split(",")[0]
    frames = sorted((data / "Clip" / "clip_224x224" / f"{int(clip):05d}").iterdir())
    frames[3].write_text("not an image")
    with pytest.raises(DatasetError, match=rf"set_1.csv:4: .*{frames[3].name}"):
        run(data, tmp_path / "out", "--epochs", "1")
    assert not (tmp_path / "out" / "best.json").exists(), "found before anything is written, not in epoch 1"


@pytest.mark.slow  # the trainer CLI in a second interpreter (torch import)
def test_a_non_utf8_annotation_file_is_one_line_naming_it(motion, tmp_path):
    import subprocess
    import sys

    data = _copy_motion(motion, tmp_path)
    ann = data / LAYOUTS["dfew"]["train_ann"].format(fold=1)
    ann.write_bytes(ann.read_bytes() + "99,Fröhlich\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=re.escape(f"annotation file {ann} is not UTF-8 text")):
        run(data, tmp_path / "out", "--epochs", "0")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.train",
            "--config",
            "training/configs/smoke_motion.yaml",
            "--data",
            str(data),
            "--out-dir",
            str(tmp_path / "cli"),
            "--set",
            "data.folds=3",
            "--epochs",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    bad_byte = ann.read_bytes().index("ö".encode("latin-1"))
    assert result.stderr.strip().splitlines() == [
        f"train: error: annotation file {ann} is not UTF-8 text (invalid start byte at byte "
        f"{bad_byte}): save it as UTF-8"
    ], result.stderr


# ---------------------------------------------------------------------------------------------- recipes
def test_every_recipe_loads_and_bhgap_follows_the_reference_protocol():
    from pathlib import Path

    for path in sorted(Path("training/configs").glob("*.yaml")):
        recipe = train.load_recipe(path)
        train.check_recipe(recipe, world=1)
        assert (
            recipe["allow_random_backbone"] == path.name.startswith("smoke_bhgap") or path.name == "smoke_motion.yaml"
        )
    for name in ("bhgap_mafw", "bhgap_dfew"):
        recipe = train.load_recipe(f"training/configs/{name}.yaml")
        assert recipe["span_s"] is None and recipe["audio_s"] == 5.12 and recipe["data"]["clip_root"] == "faces"
        assert (recipe["optimizer"], recipe["lr"], recipe["weight_decay"]) == ("adamw", 3e-5, 0.01)
        assert (recipe["batch_size"], recipe["epochs"], recipe["scheduler"]) == (8, 25, "cosine_epoch")
    ours = train.load_recipe("training/configs/bhgap_mafw_ours.yaml")
    assert (ours["lr"], ours["weight_decay"], ours["batch_size"], ours["epochs"]) == (1e-4, 0.05, 16, 30)
    assert train.load_recipe("training/configs/bhgap_dfew.yaml")["data"]["layout"] == "dfew"
    # the recipe's audio length reaches the model's log-mel front end
    recipe = train.parse_args(["--config", "training/configs/bhgap_dfew.yaml", "--data", "x", "--model", "bhgap-tiny"])
    assert train.build(recipe, class_set="dfew", span_s=3.0).frontend.num_frames == 512


@pytest.mark.slow  # trains BHGap for an epoch
def test_bhgap_trains_on_whole_clips_with_5_12_s_of_audio(tmp_path):
    data = make_av_dataset(tmp_path / "av", clips_per_class=2, num_classes=7, size=16, seconds=2.0, folds=2)
    summary = train.main(
        [
            "--config",
            "training/configs/smoke_bhgap_av.yaml",
            "--data",
            str(data),
            "--out-dir",
            str(tmp_path / "out"),
            "--set",
            "data.folds=2",
            "--span-s",
            "null",
            "--audio-s",
            "5.12",
            "--epochs",
            "1",
            "--val-fraction",
            "0",
            "--select",
            "last",
            "--progress",
            "false",
            "--tensorboard",
            "false",
        ]
    )
    config = read_config(summary["checkpoint"])
    assert config["audio_s"] == 5.12 and config["span_s"] == 2.0  # the node's span: the median clip
    assert config["training"]["frame_sampling"] == "whole clip" and summary["best"]["epoch"] == 1
    # A clip without its audio stops an audio-visual run before training.
    wav = sorted((data / "clips").glob("*.wav"))[3]
    wav.unlink()
    with pytest.raises(
        DatasetError, match=rf"clips cannot be read; the first: .*no audio for frame directory .*{wav.stem}"
    ):
        train.main(
            [
                "--config",
                "training/configs/smoke_bhgap_av.yaml",
                "--data",
                str(data),
                "--out-dir",
                str(tmp_path / "no_audio"),
                "--set",
                "data.folds=2",
                "--epochs",
                "1",
                "--tensorboard",
                "false",
                "--val-fraction",
                "0",
                "--select",
                "last",
            ]
        )
    assert not (tmp_path / "no_audio" / "best.json").exists()
