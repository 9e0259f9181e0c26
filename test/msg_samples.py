"""One filled-in instance of each duse_ros message, with distinctive values in every field, shared
by the publishing child process and the checking test."""

from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header

from duse_ros.msg import AudioChunk, DialoguePrompt, EmotionState, LLMExchange


def _header(sec: int, frame: str) -> Header:
    return Header(stamp=Time(sec=sec, nanosec=123_456_789), frame_id=frame)


def samples() -> dict:
    state = EmotionState(
        header=_header(1_700_000_010, "camera_optical_frame"),
        window_start=Time(sec=1_700_000_008, nanosec=5),
        window_end=Time(sec=1_700_000_010, nanosec=123_456_789),
        model_id="duse-vitb16-normal",
        checkpoint="/ckpt/duse_dfew.json",
        untrained=True,
        modality=EmotionState.MODALITY_AUDIO_VISUAL,
        class_names=["happiness", "sadness", "neutral"],
        probabilities=[0.5, 0.25, 0.25],
        label="happiness",
        confidence=0.5,
        smoothed_probabilities=[0.375, 0.375, 0.25],
        smoothed_label="sadness",
        smoothed_confidence=0.375,
        smoothing_count=4,
        face_found=True,
        frames_used=16,
        audio_samples_used=32000,
        audio_sample_rate=16000,
        inference_latency=Duration(sec=0, nanosec=42_000_000),
        face_id="f17",
        face_roi=RegionOfInterest(x_offset=120, y_offset=64, width=98, height=102),
        image_width=640,
        image_height=480,
    )
    prompt = DialoguePrompt(
        header=_header(1_700_000_011, "camera_optical_frame"),
        emotion="sadness",
        confidence=0.75,
        emotion_duration=Duration(sec=3, nanosec=500_000_000),
        emotion_stamp=Time(sec=1_700_000_010, nanosec=7),
        trend="neutral -> sadness",
        system_prompt="The person looks sad (75%).",
        user_prompt='The user said: "我很好"',
        language="zh",
        reason=DialoguePrompt.REASON_CHANGE,
    )
    exchange = LLMExchange(
        header=_header(1_700_000_012, "camera_optical_frame"),
        prompt=prompt,
        base_url="http://127.0.0.1:8000/v1",
        model="qwen2.5-7b-instruct",
        success=False,
        reply="",
        error="timeout after 5.0 s",
        attempts=3,
        latency=Duration(sec=15, nanosec=1),
    )
    audio = AudioChunk(
        header=_header(1_700_000_013, "mic"),
        sample_rate=48000,
        channels=2,
        sample_format=AudioChunk.FORMAT_S16LE,
        data=bytes(range(256)) * 4,
    )
    return {"emotion_state": state, "dialogue_prompt": prompt, "llm_exchange": exchange, "audio_chunk": audio}
