"""Perception and dialogue: affect_node (video or audio-visual) and llm_bridge_node.

    ros2 launch duse_ros full_stack.launch.py pipeline:=av llm_base_url:=http://127.0.0.1:8000/v1 \
        llm_model:=Qwen2.5-7B-Instruct language:=zh
Arguments of the pipeline's launch file (model:=..., image_topic:=...) pass through unchanged.
"""
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

SHARE = FindPackageShare("duse_ros")
# Launch argument -> llm_bridge_node parameter, set only when the argument is given: an empty
# default passed on to the node would mask the value in the bridge config file.
BRIDGE_PARAMETERS = {"llm_base_url": "llm.base_url", "llm_model": "llm.model",
                     "llm_api_key_env": "llm.api_key_env", "language": "language"}


def llm_bridge_node(context: LaunchContext) -> list:
    arg = LaunchConfiguration
    overrides = {parameter: value for name, parameter in BRIDGE_PARAMETERS.items()
                 if (value := arg(name).perform(context))}
    return [Node(
        package="duse_ros", executable="llm_bridge_node", name="llm_bridge_node", namespace=arg("namespace"),
        output="screen", emulate_tty=True,
        parameters=[arg("bridge_config"), overrides],
        remappings=[("emotion_state", arg("emotion_topic"))],
    )]


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    # <share>/launch/<pipeline>_pipeline.launch.py; the choices check runs before it is resolved.
    pipeline_launch = [SHARE, "/launch/", arg("pipeline"), "_pipeline.launch.py"]
    return LaunchDescription([
        DeclareLaunchArgument("pipeline", default_value="video", choices=["video", "av"],
                              description="video (the default face-expression model, or DuSE with model:=) or av (audio-visual) perception"),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("emotion_topic", default_value="emotion_state"),
        DeclareLaunchArgument("bridge_config", default_value=PathJoinSubstitution([SHARE, "config", "llm_bridge.yaml"])),
        DeclareLaunchArgument("llm_base_url", default_value="",
                              description="OpenAI-compatible base URL ending in /v1; empty: the bridge config file's"),
        DeclareLaunchArgument("llm_model", default_value="", description="empty: the bridge config file's"),
        DeclareLaunchArgument("llm_api_key_env", default_value="",
                              description="name of the environment variable holding the API key; "
                                          "empty: the bridge config file's"),
        DeclareLaunchArgument("language", default_value="",
                              description="en | zh (prompts_<language>.yaml); empty: the bridge config file's"),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(pipeline_launch),
                                 launch_arguments={"namespace": arg("namespace"), "emotion_topic": arg("emotion_topic")}.items()),
        OpaqueFunction(function=llm_bridge_node),
    ])
