"""Launch a OneLLM training stage: a thin wrapper around ``onellm.training`` for distributed launchers.

    accelerate launch --config_file train/accelerate/8gpu.yaml train/train.py train/recipes/stage1_image.yaml
    deepspeed --hostfile hostfile train/train.py train/recipes/instruction.yaml
    python train/train.py train/recipes/tiny_stage1_image.yaml max_steps=10      (same as `onellm train`)
"""
import sys

from onellm.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
