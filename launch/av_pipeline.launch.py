"""The audio-visual pipeline with BHGap: camera + microphone in, EmotionState out (audio alone when no face).

    ros2 launch duse_ros av_pipeline.launch.py image_topic:=/camera/image_raw audio_topic:=/mic/audio
    ros2 launch duse_ros av_pipeline.launch.py model:=/models/bhgap_dfew.json device:=cuda \
        visual_weights:=/models/mae_face_vitb16.pth audio_weights:=/models/audiomae_vitb16.pth

The model and the frozen encoders' weight files default to config/av_pipeline.yaml's.
"""

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

SHARE = FindPackageShare("duse_ros")


def generate_launch_description() -> LaunchDescription:
    # Declared here so a value given on the command line wins over this file's default; every
    # other argument of affect_pipeline.launch.py (model:=..., image_topic:=...) passes through
    # unchanged, and the model is the config file's unless model:= is given.
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "config",
                default_value=PathJoinSubstitution([SHARE, "config", "av_pipeline.yaml"]),
                description="affect_node parameters file (audio-visual model)",
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(PathJoinSubstitution([SHARE, "launch", "affect_pipeline.launch.py"])),
                launch_arguments={"config": LaunchConfiguration("config")}.items(),
            ),
        ]
    )
