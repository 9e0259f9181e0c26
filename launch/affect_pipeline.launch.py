"""affect_node with its parameters file, topics and model as launch arguments.

    ros2 launch duse_ros affect_pipeline.launch.py config:=/path/params.yaml image_topic:=/camera/image_raw
The video and audio-visual launch files include this one with their own config default.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    "config": (PathJoinSubstitution([FindPackageShare("duse_ros"), "config", "duse_video.yaml"]),
               "affect_node parameters file"),
    "model": ("duse-vitb16-normal", "registered model name, or a trained checkpoint's .json"),
    "clip_weights": ("", "open_clip checkpoint file with the frozen CLIP weights"),
    "device": ("cpu", "cpu | cuda | cuda:N | auto"),
    "namespace": ("", "namespace for the node and its relative topics"),
    "image_topic": ("image_raw", "sensor_msgs/Image input"),
    "compressed_image_topic": ("image_raw/compressed", "sensor_msgs/CompressedImage input (image_compressed:=true)"),
    "audio_topic": ("audio", "microphone input (audio-visual models)"),
    "emotion_topic": ("emotion_state", "duse_ros/EmotionState output"),
}


def declare_arguments(arguments: dict = ARGUMENTS) -> list:
    return [DeclareLaunchArgument(name, default_value=default, description=text)
            for name, (default, text) in arguments.items()]


def affect_node() -> Node:
    arg = LaunchConfiguration
    return Node(
        package="duse_ros", executable="affect_node", name="affect_node", namespace=arg("namespace"),
        output="screen", emulate_tty=True,
        parameters=[arg("config"), {"model": arg("model"), "clip_weights": arg("clip_weights"),
                                    "device": arg("device")}],
        remappings=[("image_raw", arg("image_topic")), ("image_raw/compressed", arg("compressed_image_topic")),
                    ("audio", arg("audio_topic")), ("emotion_state", arg("emotion_topic"))],
    )


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(declare_arguments() + [affect_node()])
