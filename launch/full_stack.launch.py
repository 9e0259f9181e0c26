"""Perception and dialogue: affect_node (video or audio-visual) and llm_bridge_node.

    ros2 launch duse_ros full_stack.launch.py pipeline:=av llm_base_url:=http://127.0.0.1:8000/v1 \
        llm_model:=Qwen2.5-7B-Instruct language:=zh
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

SHARE = FindPackageShare("duse_ros")


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    pipeline_launch = PathJoinSubstitution([
        SHARE, "launch", PythonExpression(["'", arg("pipeline"), "' + '_pipeline.launch.py'"])])
    bridge = Node(
        package="duse_ros", executable="llm_bridge_node", name="llm_bridge_node", namespace=arg("namespace"),
        output="screen", emulate_tty=True,
        parameters=[arg("bridge_config"), {"llm.base_url": arg("llm_base_url"), "llm.model": arg("llm_model"),
                                           "llm.api_key_env": arg("llm_api_key_env"), "language": arg("language")}],
        remappings=[("emotion_state", arg("emotion_topic"))],
    )
    return LaunchDescription([
        DeclareLaunchArgument("pipeline", default_value="video", choices=["video", "av"],
                              description="video (DuSE) or av (audio-visual) perception"),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("emotion_topic", default_value="emotion_state"),
        DeclareLaunchArgument("bridge_config", default_value=PathJoinSubstitution([SHARE, "config", "llm_bridge.yaml"])),
        DeclareLaunchArgument("llm_base_url", default_value="", description="OpenAI-compatible base URL ending in /v1; empty: prompts only"),
        DeclareLaunchArgument("llm_model", default_value=""),
        DeclareLaunchArgument("llm_api_key_env", default_value="DUSE_LLM_API_KEY",
                              description="name of the environment variable holding the API key"),
        DeclareLaunchArgument("language", default_value="en", choices=["en", "zh"]),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(pipeline_launch),
                                 launch_arguments={"namespace": arg("namespace"), "emotion_topic": arg("emotion_topic")}.items()),
        bridge,
    ])
