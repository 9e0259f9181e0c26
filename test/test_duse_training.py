"""The offline DuSE trainer end to end on a generated dataset, and its frame sampling."""
import json
import logging

import numpy as np
import pytest
import torch

from duse_ros.models import build_model
from training import count_params, train_duse
from training.datasets import VideoClipDataset, make_synthetic_dataset, read_annotation, read_clip, segment_indices

logging.getLogger().setLevel(logging.ERROR)


def test_segment_sampling():
    assert segment_indices(160, 16, train=False) == list(range(5, 160, 10))        # segment centres
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        picked = segment_indices(160, 16, train=True, generator=g)
        assert all(10 * i <= j < 10 * (i + 1) for i, j in enumerate(picked))         # one inside each segment
    short = segment_indices(5, 16, train=False)
    assert len(short) == 16 and short == sorted(short) and set(short) == set(range(5))
    assert segment_indices(1, 16, train=True) == [0] * 16


def test_annotation_formats(tmp_path):
    (tmp_path / "a.csv").write_text("video_name,label\n# a comment\nclips/001,3\n\nclips/002 40 1\n")
    entries = read_annotation(tmp_path / "a.csv")
    assert [(e.path, e.label) for e in entries] == [(tmp_path / "clips/001", 2), (tmp_path / "clips/002", 0)]
    assert read_annotation(tmp_path / "a.csv", root="/data", label_base=0)[0].label == 3
    (tmp_path / "bad.txt").write_text("clips/001 1\nclips/002 x\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: label 'x'"):
        read_annotation(tmp_path / "bad.txt")


def test_synthetic_clips_read_from_folders_and_videos(tmp_path):
    train_ann, test_ann = make_synthetic_dataset(tmp_path, num_classes=3, train_per_class=3, test_per_class=1)
    entries = read_annotation(train_ann)
    assert len(entries) == 9 and {e.label for e in entries} == {0, 1, 2}
    videos = [e for e in entries if e.path.suffix == ".avi"]
    assert videos and all(e.path.is_file() for e in videos)
    for entry in (entries[0], videos[0]):
        frames = read_clip(entry.path, 16, train=False)
        assert len(frames) == 16 and frames[0].shape == (40, 40, 3) and frames[0].dtype == np.uint8
    model = build_model("duse-tiny")
    dataset = VideoClipDataset(entries, model.input_spec, num_classes=7, train=True)
    video, label = dataset[0]
    assert video.shape == (16, 3, 32, 32) and video.dtype == torch.float32 and label == 0
    with pytest.raises(ValueError, match="labels outside 0..1"):
        VideoClipDataset(entries, model.input_spec, num_classes=2, train=False)


def test_train_two_epochs_then_load_the_best_checkpoint(tmp_path):
    summary = train_duse.main(["--model", "duse-tiny", "--synthetic", "--epochs", "2", "--batch-size", "8",
                               "--workers", "0", "--out-dir", str(tmp_path), "--no-progress"])
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    config = json.loads((tmp_path / "best.json").read_text())
    assert config["training"]["best"] == summary["best"]
    assert json.loads((tmp_path / "metrics.json").read_text())["best"] == summary["best"]
    pytest.importorskip("matplotlib")
    assert (tmp_path / "curves.png").stat().st_size > 1000 and (tmp_path / "confusion.png").stat().st_size > 1000

    # The checkpoint holds the best epoch's weights: scoring the test split again gives its UAR/WAR.
    model = build_model(str(tmp_path / "best.json"))
    test_set = VideoClipDataset(read_annotation(tmp_path / "synthetic" / "test.txt"), model.input_spec, 7, train=False)
    loader = torch.utils.data.DataLoader(test_set, batch_size=8)
    _, predictions, labels = train_duse.evaluate(model, loader, torch.nn.CrossEntropyLoss(), torch.device("cpu"),
                                                 amp=False, progress=False)
    uar, war, _ = train_duse.scores(predictions, labels, 7)
    assert (uar, war) == pytest.approx((summary["best"]["uar"], summary["best"]["war"]))


def test_scores():
    uar, war, confusion = train_duse.scores(np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 1, 1, 1, 1]), 3)
    assert war == pytest.approx(4 / 6) and uar == pytest.approx((1 + 3 / 5) / 2)   # class 2 has no clips
    assert confusion.tolist() == [[1, 0, 0], [1, 3, 1], [0, 0, 0]]


def test_count_params_needs_no_weights(capsys):
    rows = {r["name"]: r for r in count_params.main(["duse-vitb16-normal", "duse-vitl14-deep", "duse-vitb16-coop-avgpool"])}
    b16 = rows["duse-vitb16-normal"]
    assert (b16["M"], b16["prompts"], b16["frozen"]) == (4, 4 * 4 * 512, 149_620_737)
    assert b16["mlp"] == 512 * 768 + 768 and b16["trainable"] == b16["prompts"] + b16["mlp"] + b16["lsea"]
    assert rows["duse-vitl14-deep"]["prompts"] == 8 * 4 * 768
    assert rows["duse-vitb16-coop-avgpool"]["trainable"] == 4 * 512
    assert "duse-vitl14-deep" in capsys.readouterr().out
