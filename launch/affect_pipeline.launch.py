"""affect_node as a lifecycle node, with its parameters file, topics and model as launch arguments.

    ros2 launch duse_ros affect_pipeline.launch.py config:=/path/params.yaml image_topic:=/camera/image_raw
    ros2 launch duse_ros affect_pipeline.launch.py --show-args

Launch drives the node's lifecycle: it configures it, activates it once configured, and reports a
failed transition (a bad `model:=`, missing weights) in its own output; `exit_on_failure:=true`
ends launch with a non-zero code then. `autostart:=false` leaves the node unconfigured for a
lifecycle manager. The video and audio-visual launch files include this one with their own config.
"""

import lifecycle_msgs.msg
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare

from launch import LaunchContext, LaunchDescription

SHARE = FindPackageShare("duse_ros")
ARGUMENTS = {
    "config": (PathJoinSubstitution([SHARE, "config", "duse_video.yaml"]), "affect_node parameters file"),
    "model": ("", "registered model name, or a trained checkpoint's .json; empty: the config file's"),
    "clip_weights": ("", "open_clip checkpoint file with the frozen CLIP weights (DuSE); empty: the config file's"),
    "visual_weights": ("", "frozen visual ViT file (BHGap, e.g. MAE-Face ViT-B/16); empty: the config file's"),
    "audio_weights": ("", "frozen audio ViT file (BHGap, e.g. AudioMAE ViT-B/16); empty: the config file's"),
    "device": ("", "cpu | cuda | cuda:N | auto; empty: the config file's"),
    "image_compressed": (
        "",
        "true: subscribe to <image_topic>/compressed (sensor_msgs/CompressedImage, "
        "image_transport's naming); false: raw images; empty: the config file's",
    ),
    "use_sim_time": ("false", "true: stamps and timers follow /clock (replaying a bag with --clock)"),
    "autostart": (
        "true",
        "true: launch configures and activates the node; false: it stays unconfigured for a lifecycle manager",
    ),
    "exit_on_failure": ("false", "true: a failed configure or activate ends launch with a non-zero exit code"),
    "fastdds_profile": (
        PathJoinSubstitution([SHARE, "config", "fastdds_large_shm.xml"]),
        "Fast DDS XML profile for the node (an 8 MB shared-memory segment, so raw camera "
        "frames are not dropped); empty: the environment's FASTDDS_DEFAULT_PROFILES_FILE",
    ),
    "namespace": ("", "namespace for the node and its relative topics"),
    "image_topic": ("image_raw", "camera input base topic (sensor_msgs/Image; its /compressed with image_compressed)"),
    "audio_topic": ("audio", "microphone input (audio-visual models)"),
    "emotion_topic": ("emotion_state", "duse_ros/EmotionState output"),
}
# Parameters these launch arguments override only when given: an empty default passed on to the
# node would mask the value in the config file.
PARAMETER_ARGUMENTS = ("model", "clip_weights", "visual_weights", "audio_weights", "device", "image_compressed")
BOOLEAN_ARGUMENTS = ("image_compressed", "use_sim_time", "autostart", "exit_on_failure")


def _flag(context: LaunchContext, name: str) -> bool:
    value = LaunchConfiguration(name).perform(context).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"launch argument {name}:={value!r} must be true or false")
    return value == "true"


def _fail(reason: str):
    def raise_it(context: LaunchContext):
        raise RuntimeError(reason)  # launch logs it, shuts down and exits with code 1

    return raise_it


def _transition(node: LifecycleNode, transition_id: int) -> EmitEvent:
    return EmitEvent(
        event=ChangeState(lifecycle_node_matcher=lambda action: action is node, transition_id=transition_id)
    )


def _activate_if_configured(node: LifecycleNode):
    def activate(context: LaunchContext) -> list:
        configured = context.locals.event.goal_state == "inactive"  # else configure failed: reported above
        return [_transition(node, lifecycle_msgs.msg.Transition.TRANSITION_ACTIVATE)] if configured else []

    return activate


def affect_node(context: LaunchContext) -> list:
    arg = LaunchConfiguration
    overrides: dict[str, object] = {}
    for name in PARAMETER_ARGUMENTS:
        if value := arg(name).perform(context):
            overrides[name] = _flag(context, name) if name in BOOLEAN_ARGUMENTS else value
    # Launch drives the lifecycle below, so the node must not walk itself to active.
    overrides.update({"use_sim_time": _flag(context, "use_sim_time"), "autostart": False})
    profile = arg("fastdds_profile").perform(context)
    node = LifecycleNode(
        package="duse_ros",
        executable="affect_node",
        name="affect_node",
        namespace=arg("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[arg("config"), overrides],
        remappings=[
            ("image_raw", arg("image_topic")),
            ("audio", arg("audio_topic")),
            ("emotion_state", arg("emotion_topic")),
        ],
        additional_env={"FASTDDS_DEFAULT_PROFILES_FILE": profile} if profile else None,
    )
    actions: list = [node]
    for step, start, failed in (("configure", "configuring", "unconfigured"), ("activate", "activating", "inactive")):
        reason = (
            f"affect_node failed to {step}: the reason is in its log above and on /diagnostics "
            "(a wrong model:= or config file, missing weights: run duse-fetch-weights)"
        )
        on_failure = [LogInfo(msg=f"[ERROR] {reason}")]
        if _flag(context, "exit_on_failure"):
            on_failure.append(OpaqueFunction(function=_fail(reason)))
        actions.append(
            RegisterEventHandler(
                OnStateTransition(target_lifecycle_node=node, start_state=start, goal_state=failed, entities=on_failure)
            )
        )
    if _flag(context, "autostart"):
        # Autostart acts once, on the outcome of launch's own configure: a later configure by hand
        # (deactivate, cleanup, set, configure) leaves the node inactive, as lifecycle users expect.
        actions.append(
            RegisterEventHandler(
                OnStateTransition(
                    target_lifecycle_node=node,
                    start_state="configuring",
                    entities=[OpaqueFunction(function=_activate_if_configured(node))],
                    handle_once=True,
                )
            )
        )
        actions.append(_transition(node, lifecycle_msgs.msg.Transition.TRANSITION_CONFIGURE))
    return actions


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument(
            name,
            default_value=default,
            description=text,
            **({"choices": ["true", "false"]} if name in BOOLEAN_ARGUMENTS[1:] else {}),
        )
        for name, (default, text) in ARGUMENTS.items()
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=affect_node)])
