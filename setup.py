"""pip route for duse_ros's Python package. The messages are built by CMake (colcon on a robot,
`make setup` on a bare machine); see README."""

from setuptools import find_packages, setup

VERSION = "0.1.0"  # keep equal to package.xml and duse_ros.__version__ (test/test_package_metadata.py)

setup(
    name="duse_ros",
    version=VERSION,
    description="Affect sensing for ROS 2 robots: DuSE and BHGap emotion models, LLM dialogue bridge",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["duse_ros", "duse_ros.*"]),
    # the bundled test/demo portrait and the tiny open_clip test config
    package_data={"duse_ros": ["data/*.jpg", "data/*.md", "models/open_clip_configs/*.json"]},
    install_requires=[
        "numpy>=1.26,<3",
        "opencv-python-headless>=4.9,<5",
        "PyYAML>=6",
        "torch==2.13.0",
        "open_clip_torch==3.3.0",
        "safetensors>=0.4",
        "h5py>=3.10",
        "mambapy==1.2.0",
        "rosbags>=0.10",
        "av>=14",
    ],
    extras_require={
        # mamba-ssm's CUDA kernels for BHGap's prompt generators (mambapy is the CPU fallback).
        "cuda": ["mamba-ssm>=2.2"],
        "train": ["tqdm>=4.60", "matplotlib>=3.7"],
        # duse-export and runtime onnxruntime (onnxruntime-gpu instead on a CUDA machine or Jetson)
        "onnx": ["onnx>=1.17", "onnxruntime>=1.20"],
        "test": ["pytest>=7,<9"],  # launch_testing's plugin does not load under pytest 9
    },
    entry_points={
        "console_scripts": [
            "affect_node = duse_ros.nodes.startup:entry_affect_node",
            "llm_bridge_node = duse_ros.nodes.startup:entry_llm_bridge_node",
            "duse_demo = duse_ros.tools.demo:main",
            "duse-make-bag = duse_ros.tools.make_bag:main",
            "duse-eval-bag = duse_ros.tools.eval_bag:main",
            "duse-fetch-weights = duse_ros.weights:main",
            "duse-export = duse_ros.tools.export:main",
        ],
    },
)
