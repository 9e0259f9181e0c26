"""affect_node with its parameters file, topics and model as launch arguments.

    ros2 launch duse_ros affect_pipeline.launch.py config:=/path/params.yaml image_topic:=/camera/image_raw
The video and audio-visual launch files include this one with their own config default.
"""
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    "config": (PathJoinSubstitution([FindPackageShare("duse_ros"), "config", "duse_video.yaml"]),
               "affect_node parameters file"),
    "model": ("", "registered model name, or a trained checkpoint's .json; empty: the config file's"),
    "clip_weights": ("", "open_clip checkpoint file with the frozen CLIP weights; empty: the config file's"),
    "device": ("", "cpu | cuda | cuda:N | auto; empty: the config file's"),
    "namespace": ("", "namespace for the node and its relative topics"),
    "image_topic": ("image_raw", "sensor_msgs/Image input"),
    "compressed_image_topic": ("image_raw/compressed", "sensor_msgs/CompressedImage input (image_compressed:=true)"),
    "audio_topic": ("audio", "microphone input (audio-visual models)"),
    "emotion_topic": ("emotion_state", "duse_ros/EmotionState output"),
}
# Parameters these launch arguments override only when given: an empty default passed on to the
# node would mask the value in the config file.
PARAMETER_ARGUMENTS = ("model", "clip_weights", "device")


def affect_node(context: LaunchContext) -> list:
    arg = LaunchConfiguration
    overrides = {name: value for name in PARAMETER_ARGUMENTS if (value := arg(name).perform(context))}
    return [Node(
        package="duse_ros", executable="affect_node", name="affect_node", namespace=arg("namespace"),
        output="screen", emulate_tty=True,
        parameters=[arg("config"), overrides],
        remappings=[("image_raw", arg("image_topic")), ("image_raw/compressed", arg("compressed_image_topic")),
                    ("audio", arg("audio_topic")), ("emotion_state", arg("emotion_topic"))],
    )]


def generate_launch_description() -> LaunchDescription:
    arguments = [DeclareLaunchArgument(name, default_value=default, description=text)
                 for name, (default, text) in ARGUMENTS.items()]
    return LaunchDescription(arguments + [OpaqueFunction(function=affect_node)])
