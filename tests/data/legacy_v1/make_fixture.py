"""Writes, with the pre-registry code, a mini model directory, a training checkpoint and reference logits.

Usage: python make_fixture.py OUT_DIR CHECKOUT_OF_f1a005c  (then copy OUT/model, OUT/run/checkpoints/step-000002
-> checkpoints/, OUT/reference.* here). The test test_registry.py checks that today's code loads them unchanged.
"""
import json, sys, shutil
from pathlib import Path
sys.path.insert(0, sys.argv[2])  # a checkout of commit f1a005c, the last pre-registry format
import torch
from onellm import OneLLM, OneLLMConfig
from onellm.data.text import load_tokenizer, train_sentencepiece
from onellm.data.synth import generate_world
from onellm.data.synth.world import corpus_lines
from onellm.training import load_recipe, train

out = Path(sys.argv[1]); shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
tok = load_tokenizer(train_sentencepiece(corpus_lines() * 2, out / "_tok", vocab_size=300))
over = {"vision.width": 32, "vision.layers": 1, "vision.head_width": 16, "vision.embed_dim": 16,
        "upm.expert_layers": 1, "upm.num_heads": 2, "upm.num_tokens": 4, "upm.multiple_of": 16,
        "llm.hidden_size": 32, "llm.intermediate_size": 64, "llm.num_layers": 1, "llm.num_heads": 2,
        "llm.num_kv_heads": 2, "llm.vocab_size": len(tok), "inputs.fmri_voxels": 64, "inputs.audio_mel_bins": 32,
        "inputs.audio_frames": 64, "inputs.point_num_points": 256, "inputs.point_num_groups": 16,
        "inputs.point_group_size": 8, "inputs.imu_stride": 5, "inputs.video_clips": 2, "inputs.video_crops": 1}
torch.manual_seed(0)
cfg = OneLLMConfig.preset("tiny", **over)
model = OneLLM(cfg); model.tokenizer = tok
model.save_pretrained(out / "model")
shutil.rmtree(out / "_tok")
world = Path("/tmp/legacy_world"); shutil.rmtree(world, ignore_errors=True)
generate_world(world, 4, seed=0, modalities="image,audio", fmri_voxels=64)
recipe = out / "recipe.yaml"
recipe.write_text(f"""model: {out / 'model'}
output_dir: {out / 'run'}
datasets: [{{manifest: {world / 'train' / 'alignment.jsonl'}, modalities: [image]}}]
trainable: {{tokenizers: false, upm: [image]}}
micro_batch: 2
max_steps: 2
save_every: 2
num_workers: 0
report_to: []
optimizer: {{lr: 1.0e-3}}
""")
res = train(load_recipe(recipe))
print(res.losses)

# Reference logits of the pre-registry implementation: every modality alone, a mixed batch and a sample with two
# inputs; the inputs and token ids are saved with them so the test needs no RNG of its own.
from safetensors.torch import save_file
from onellm.data.collate import collate_packed, pack_sample
from onellm.model import input_shape
from onellm.modality import Modality

model = OneLLM.from_pretrained(out / "model").eval()
g = torch.Generator().manual_seed(123)
tensors, layout = {}, []
samples = []
specs = [[m.value] for m in Modality] + [["video", "audio"]]
for k, mods in enumerate(specs):
    ids = [1] + torch.randint(3, cfg.llm.vocab_size, (6,), generator=g).tolist()
    xs = []
    for j, m in enumerate(mods):
        x = torch.rand(input_shape(cfg, Modality(m)), generator=g)
        tensors[f"input.{k}.{j}"] = x
        xs.append((Modality(m), x))
    tensors[f"ids.{k}"] = torch.tensor(ids)
    samples.append(pack_sample(ids, None, xs, model.block_length))
    layout.append(mods)
with torch.no_grad():
    for k, s in enumerate(samples):
        tensors[f"logits.single.{k}"] = model(collate_packed([s], with_labels=False)).logits[0, -1]  # (V,)
    mixed = model(collate_packed(samples, padding_side="right", with_labels=False)).logits
    tensors["logits.mixed"] = mixed
save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "reference.safetensors"))
(out / "reference.json").write_text(json.dumps({"samples": layout, "padding_side": "right"}, indent=1))
print("reference written", mixed.shape)
