"""Perception and dialogue: affect_node (video or audio-visual) and llm_bridge_node.

    ros2 launch duse_ros full_stack.launch.py pipeline:=av llm_base_url:=http://127.0.0.1:8000/v1 \
        llm_model:=Qwen2.5-7B-Instruct language:=zh
    ros2 launch duse_ros full_stack.launch.py --show-args

Every argument of affect_pipeline.launch.py (model:=, image_topic:=, use_sim_time:=, ...) is
declared here too, from that file's own table, and passed through; `use_sim_time` reaches both nodes.
"""

import importlib.util
from pathlib import Path

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchContext, LaunchDescription

SHARE = FindPackageShare("duse_ros")
# Launch argument -> llm_bridge_node parameter, set only when the argument is given: an empty
# default passed on to the node would mask the value in the bridge config file.
BRIDGE_PARAMETERS = {
    "llm_base_url": "llm.base_url",
    "llm_model": "llm.model",
    "llm_api_key_env": "llm.api_key_env",
    "language": "language",
}
BRIDGE_ARGUMENTS = {
    "bridge_config": (PathJoinSubstitution([SHARE, "config", "llm_bridge.yaml"]), "llm_bridge_node parameters file"),
    "llm_base_url": ("", "OpenAI-compatible base URL ending in /v1; empty: the bridge config file's"),
    "llm_model": ("", "model name the endpoint serves; empty: the bridge config file's"),
    "llm_api_key_env": ("", "name of the environment variable holding the API key; empty: the bridge config file's"),
    "language": ("", "en | zh (prompts_<language>.yaml); empty: the bridge config file's"),
}


def _pipeline_arguments() -> dict:
    """affect_pipeline.launch.py's argument table (it sits beside this file, in the source tree and
    in the installed share/launch alike), less `config`, which each pipeline file sets."""
    path = Path(__file__).with_name("affect_pipeline.launch.py")
    spec = importlib.util.spec_from_file_location("duse_ros_affect_pipeline_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {k: v for k, v in module.ARGUMENTS.items() if k != "config"}


def llm_bridge_node(context: LaunchContext) -> list:
    arg = LaunchConfiguration
    overrides: dict[str, object] = {
        parameter: value for name, parameter in BRIDGE_PARAMETERS.items() if (value := arg(name).perform(context))
    }
    overrides["use_sim_time"] = arg("use_sim_time").perform(context).lower() == "true"
    return [
        Node(
            package="duse_ros",
            executable="llm_bridge_node",
            name="llm_bridge_node",
            namespace=arg("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[arg("bridge_config"), overrides],
            remappings=[("emotion_state", arg("emotion_topic"))],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    passed_through = _pipeline_arguments()
    # <share>/launch/<pipeline>_pipeline.launch.py; the choices check runs before it is resolved.
    pipeline_launch = [SHARE, "/launch/", arg("pipeline"), "_pipeline.launch.py"]
    declared = [
        DeclareLaunchArgument(
            "pipeline",
            default_value="video",
            choices=["video", "av"],
            description="video (the default face-expression model, or DuSE with "
            "model:=) or av (audio-visual) perception",
        )
    ]
    declared += [
        DeclareLaunchArgument(name, default_value=default, description=f"{text} (passed to the pipeline)")
        for name, (default, text) in passed_through.items()
    ]
    declared += [
        DeclareLaunchArgument(name, default_value=default, description=text)
        for name, (default, text) in BRIDGE_ARGUMENTS.items()
    ]
    return LaunchDescription(
        declared
        + [
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(pipeline_launch),
                launch_arguments={name: arg(name) for name in passed_through}.items(),
            ),
            OpaqueFunction(function=llm_bridge_node),
        ]
    )
