"""duse-eval-bag scoring another expression provider: a stand-in provider process (test/hri_provider.py)
answers the replayed frames with hri_msgs/Expression (stand-in hri_msgs build, test/hri_standin.py)
or EmotionState; the tool runs in a process of its own. Each report is checked against what the
provider logged it sent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bag_fixtures import write_robot_bag
from hri_standin import standin_env

from duse_ros.io.rosbag import BagFile
from duse_ros.nodes.hri_io import import_hri_msgs
from duse_ros.timebase import NS
from duse_ros.tools import eval_bag

ROOT = Path(__file__).resolve().parents[1]
START_NS = 1_750_000_000 * NS
# Labels by seconds from the bag's origin (its first message); the provider's schedule by seconds
# from the first frame it answers, which is the same first frame.
LABELS = "start,end,label\n0,2.0,happiness\n2.0,4.0,sadness\n"
SCHEDULE = "2.0:happy,2.8:bored,9:sad"


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bag") / "robot"
    write_robot_bag(path, "mcap", audio=None, seconds=4.0, fps=10.0, extra_topics=False, start_ns=START_NS)
    labels = path.parent / "labels.csv"
    labels.write_text(LABELS)
    return path, labels


def evaluate(bag, tmp_path, *provider_args, output="hri", schedule=SCHEDULE) -> tuple[dict, list[dict]]:
    path, labels = bag
    sent = tmp_path / "sent.jsonl"
    command = " ".join(
        [sys.executable, str(ROOT / "test" / "hri_provider.py"), "--images", "{image_topic}", "--every", "4"]
        + ["--schedule", schedule, "--output", output, "--emotion-topic", "{emotion_topic}", "--log", str(sent)]
        + list(provider_args)
    )
    out = tmp_path / "eval"
    done = subprocess.run(
        [sys.executable, "-m", "duse_ros.tools.eval_bag", str(path), "--labels", str(labels), "--out", str(out)]
        + ["-q", "--startup-timeout-s", "60", "--provider-command", command, "--provider-output", output]
        + ["--provider-name", "standin", "--provider-settle-s", "1.5"],
        cwd=ROOT,
        env=standin_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    logs = "".join(p.read_text()[-1500:] for p in out.glob("provider_*.log")) if out.exists() else ""
    assert done.returncode == 0, done.stderr[-3000:] + logs
    report = json.loads((out / "report.json").read_text())
    assert (out / "timeline.png").stat().st_size > 0
    return report, [json.loads(line) for line in sent.read_text().splitlines()]


def truth(stamp_ns: int) -> str:
    return "happiness" if (stamp_ns - START_NS) / NS < 2.0 else "sadness"


def test_hri_provider_is_scored_with_unmappable_names_and_untracked_faces_counted_apart(bag, tmp_path):
    report, sent = evaluate(bag, tmp_path, "--untracked-face", "ghost")
    followed = [s for s in sent if s["face"] == "f1"]
    scored = [s for s in followed if s["name"] != "bored"]
    assert len(scored) >= 5 and any(s["name"] == "bored" for s in followed)
    assert report["provider"] == "standin" and report["provider_output"] == "hri" and report["untrained"] is None
    assert report["faces_followed"] == ["f1"]
    assert report["expressions_untracked_face"] == {"ghost": len(followed)}
    assert report["expressions_unmapped"] == {"bored": sum(s["name"] == "bored" for s in followed)}
    assert report["windows_received"] == report["windows"] == len(scored) and report["readings_unstamped"] == 0
    # By hand: happy/sad map to happiness/sadness; each reading's truth is the span at its stamp.
    ours = {"happy": "happiness", "sad": "sadness"}
    pairs = [(truth(s["stamp_ns"]), ours[s["name"]]) for s in scored]
    assert report["windows_scored"] == len(pairs)
    assert report["war"] == pytest.approx(sum(t == p for t, p in pairs) / len(pairs))
    assert report["per_class_recall"]["happiness"] == pytest.approx(1.0)
    assert report["latency_ms_p95"] >= report["latency_ms_p50"] > 0
    with BagFile(Path(report["output_bag"])) as out:
        states = [out.deserialize(raw, ty) for _, ty, _, raw in out.messages(["/duse_eval/emotion_state"])]
    assert sorted(s.window_end.sec * NS + s.window_end.nanosec for s in states) == sorted(s["stamp_ns"] for s in scored)
    assert {s.face_id for s in states} == {"f1"} and all(s.valence == pytest.approx(0.5) for s in states)


def test_a_provider_that_makes_a_faces_publisher_only_on_seeing_it_is_followed_from_then_on(bag, tmp_path):
    """A ROS4HRI pipeline has no expression topic before frames flow: the tool starts playing on
    /humans/faces/tracked's publisher and follows the face's topic once it appears."""
    report, sent = evaluate(bag, tmp_path, "--lazy")
    scored = [s for s in sent if s["name"] != "bored"]
    assert report["faces_followed"] == ["f1"]
    # The first readings may go out before the tool has found the new topic; the rest arrive.
    assert 1 <= report["windows_received"] <= len(scored)
    assert report["windows_received"] >= len(scored) - 3


def test_a_provider_already_running_is_evaluated_on_its_topics(bag, tmp_path):
    """No command: the tool plays to a provider another process started and reads its hri topics."""
    path, labels = bag
    sent = tmp_path / "sent.jsonl"
    env = standin_env()
    provider = subprocess.Popen(
        [sys.executable, str(ROOT / "test" / "hri_provider.py"), "--images", "/duse_eval/ext/image_raw", "--every", "4"]
        + ["--schedule", SCHEDULE, "--log", str(sent)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        out = tmp_path / "eval"
        done = subprocess.run(
            [sys.executable, "-m", "duse_ros.tools.eval_bag", str(path), "--labels", str(labels), "--out", str(out)]
            + ["-q", "--startup-timeout-s", "60", "--provider-output", "hri", "--provider-settle-s", "1.5"]
            + ["--namespace", "/duse_eval/ext"],  # where the running provider reads the camera
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        provider.send_signal(2)
        provider.wait(10)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    scored = [s for s in (json.loads(line) for line in sent.read_text().splitlines()) if s["name"] != "bored"]
    assert report["provider"] == "ros4hri" and report["provider_command"] == []
    assert report["faces_followed"] == ["f1"] and report["windows_received"] == len(scored) >= 5


def test_a_provider_without_header_stamps_is_scored_on_arrival_bag_time_without_latency(bag, tmp_path):
    report, sent = evaluate(bag, tmp_path, "--no-stamp")
    scored = [s for s in sent if s["name"] != "bored"]
    assert report["readings_unstamped"] == report["windows_received"] == len(scored) >= 5
    assert report["latency_ms_p50"] is None  # no stamp: no frame to measure from
    assert report["windows_scored"] + report["windows_unlabelled"] == len(scored)


def test_a_provider_that_stalls_shows_its_silence(bag, tmp_path):
    report, sent = evaluate(bag, tmp_path, "--stall-after", "2")
    assert len(sent) == 2 and report["windows_received"] == 2
    last = max(s["stamp_ns"] for s in sent)
    assert report["longest_silence_s"] == pytest.approx((START_NS + int(4.0 * NS) - last) / NS, abs=0.3)
    assert report["longest_silence_s"] > 2.0


def test_an_emotion_state_provider_command_is_scored_the_same_way(bag, tmp_path):
    # An EmotionState provider names our classes (and one of its own, counted apart); it is one
    # second late to switch to sadness.
    schedule = "1.0:happiness,1.9:boredom,3.0:happiness,9:sadness"
    report, sent = evaluate(bag, tmp_path, output="duse", schedule=schedule)
    ours = [s for s in sent if s["name"] != "boredom"]
    assert report["provider_output"] == "duse"
    assert report["expressions_unmapped"] == {"boredom": len(sent) - len(ours)} and len(ours) < len(sent)
    assert report["windows_received"] == report["windows_scored"] == len(ours) >= 6
    pairs = [(truth(s["stamp_ns"]), s["name"]) for s in ours]
    war = sum(t == p for t, p in pairs) / len(pairs)
    assert war < 1.0 and report["war"] == pytest.approx(war)
    recall_sad = sum(t == p == "sadness" for t, p in pairs) / sum(t == "sadness" for t, _ in pairs)
    assert report["per_class_recall"]["happiness"] == pytest.approx(1.0)
    assert report["per_class_recall"]["sadness"] == pytest.approx(recall_sad)


def test_compare_writes_one_table_and_plot_of_a_model_a_provider_and_a_failed_entry(bag, tmp_path):
    """--compare: affect_node with a tiny model and the EmotionState stand-in provider over one bag,
    plus a provider that exits at once: one row each (the failed one with its error), the numbers
    those of each entry's own report.json, and the plot."""
    path, labels = bag
    sent = tmp_path / "sent.jsonl"
    provider = (
        f"{sys.executable} {ROOT / 'test' / 'hri_provider.py'} --images {{image_topic}} --every 4 --output duse "
        f"--emotion-topic {{emotion_topic}} --schedule 2.0:happiness,9:sadness --log {sent}"
    )
    broken = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    out = tmp_path / "cmp"
    done = subprocess.run(
        [sys.executable, "-m", "duse_ros.tools.eval_bag", str(path), "--labels", str(labels), "--out", str(out)]
        + ["-q", "--startup-timeout-s", "60", "--compare", "--model", "tiny-random-video", "--face-mode", "full_frame"]
        + ["--provider-command", provider, "--provider-command", broken, "--provider-settle-s", "1.0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-3000:]  # one entry failed
    assert "1 entries failed" in done.stderr
    table = json.loads((out / "compare.json").read_text())
    model, standin, failed = table["entries"]
    assert (model["kind"], model["entry"], model["untrained"]) == ("model", "tiny-random-video", True)
    assert standin["kind"] == "provider" and standin["untrained"] is None
    assert failed["kind"] == "provider" and "exited (code 3)" in failed["error"]
    reports = [json.loads((Path(row["out_dir"]) / "report.json").read_text()) for row in (model, standin)]
    assert set(reports[0]) <= set(reports[1])  # a provider's report has every key affect_node's has
    for row, report in zip((model, standin), reports):
        assert row["mode"] == "realtime" == report["mode"]  # a provider among the entries: all at the bag's pace
        for key in ("uar", "war", "latency_ms_p50", "latency_ms_p95", "windows_received", "per_class_recall"):
            assert row[key] == report[key], key
    assert standin["war"] == pytest.approx(1.0) and standin["windows_received"] == len(sent.read_text().splitlines())
    assert model["windows_received"] >= 3
    md = (out / "compare.md").read_text().splitlines()
    head = ["entry", "UAR %", "WAR %", "happiness %", "sadness %", "latency p50 ms", "p95 ms", "windows answered"]
    assert md[0] == "| " + " | ".join(head) + " |"  # classes with no labelled window are left out
    n = standin["windows_received"]
    assert md[3].startswith("| hri_provider.py | 100.0 | 100.0 | 100.0 | 100.0 |") and md[3].endswith(f"| {n}/{n} |")
    assert "failed: " in md[4]
    assert (out / "compare.png").stat().st_size > 0


@pytest.mark.skipif(import_hri_msgs() is not None, reason="hri_msgs is installed here: the refusal is not reachable")
def test_hri_output_without_hri_msgs_fails_naming_the_package_before_starting_anything(bag, tmp_path, capsys):
    path, labels = bag
    marker = tmp_path / "started"
    command = f'{sys.executable} -c \'open("{marker}", "w")\''
    code = eval_bag.main(
        [str(path), "--labels", str(labels), "--out", str(tmp_path / "o"), "-q"]
        + ["--provider-output", "hri", "--provider-command", command]
    )
    assert code == 2
    assert "--provider-output hri needs hri_msgs: the hri_msgs package" in capsys.readouterr().err
    assert not marker.exists()


def test_the_compare_table_marks_untrained_stopped_and_failed_entries():
    from duse_ros.tools.compare import markdown

    rows = [
        {
            "entry": "a",
            "untrained": True,
            "stopped": "no window answered",
            "uar": 0.5,
            "war": 0.25,
            "per_class_recall": {"happiness": 0.5, "sadness": None},
            "latency_ms_p50": 3.0,
            "latency_ms_p95": 4.0,
            "windows_received": 2,
            "windows": 3,
        },
        {"entry": "b", "kind": "provider", "error": "boom"},
    ]
    lines = markdown(rows).splitlines()
    assert lines[0] == "| entry | UAR % | WAR % | happiness % | latency p50 ms | p95 ms | windows answered |"
    assert lines[2] == "| a (UNTRAINED) (stopped early) | 50.0 | 25.0 | 50.0 | 3 | 4 | 2/3 |"
    assert lines[3].startswith("| b | failed: boom |")
