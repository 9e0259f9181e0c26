"""The video pipeline: camera in, EmotionState out. Without `model:=` it runs the trained default
(fer2013-minixception); a trained DuSE checkpoint is one argument away:

    ros2 launch duse_ros video_pipeline.launch.py image_topic:=/camera/color/image_raw
    ros2 launch duse_ros video_pipeline.launch.py image_topic:=/camera/color/image_raw \
        model:=/models/duse_dfew.json clip_weights:=/models/ViT-B-16.pt
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
                default_value=PathJoinSubstitution([SHARE, "config", "duse_video.yaml"]),
                description="affect_node parameters file (video model)",
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(PathJoinSubstitution([SHARE, "launch", "affect_pipeline.launch.py"])),
                launch_arguments={"config": LaunchConfiguration("config")}.items(),
            ),
        ]
    )
