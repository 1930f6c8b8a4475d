"""The modality registry: one definition per modality, models built from their own modality list, layering."""
import ast
import json
from pathlib import Path

import pytest
import torch

from onellm.config import OneLLMConfig
from onellm.modalities import DEFAULT_MODALITIES, get, names, parse_modalities, resolve
from onellm.model import OneLLM

PACKAGE = Path(__file__).resolve().parents[1] / "onellm"
LEGACY = Path(__file__).parent / "data" / "legacy_v1"


def test_registry_names_aliases_and_the_one_parser():
    assert names()[:8] == list(DEFAULT_MODALITIES)
    assert resolve("RGBD") == "depth" and resolve("rgbn") == "normal" and resolve("points") == "point"
    assert get("depth").official_name == "rgbd" and get("image").official_name == "image"
    assert parse_modalities("audio, rgbd,audio") == ["audio", "depth"]
    assert parse_modalities(True, default=["image"]) == ["image"] and parse_modalities(False) == []
    with pytest.raises(ValueError, match="unknown modality 'smell'"):
        parse_modalities(["image", "smell"])


def test_two_modality_model_has_exactly_the_parameters_of_those_two():
    torch.manual_seed(0)
    full = OneLLM(OneLLMConfig.preset("tiny"))
    two = OneLLM(OneLLMConfig.preset("tiny", modalities=["image", "audio"]))
    assert two.config.modalities == ["image", "audio"] and set(two.config.inputs.to_dict()) == {"audio"}

    def own(name: str, modality: str) -> bool:
        return name.split(".")[2 if name.startswith("upm.") else 2] == modality if name.startswith(
            ("upm.resample_tokens.", "upm.clip_proj1.", "upm.clip_proj2.", "upm.routers.", "upm.start_tag.",
             "upm.end_tag.", "tokenizers.")) else False

    def per_modality(model) -> dict[str, int]:
        out: dict[str, int] = {}
        for n, p in model.named_parameters():
            for m in DEFAULT_MODALITIES:
                if own(n, m):
                    out[m] = out.get(m, 0) + p.numel()
        return out

    full_counts, two_counts = per_modality(full), per_modality(two)
    assert set(two_counts) == {"image", "audio"}
    assert two_counts == {m: full_counts[m] for m in ("image", "audio")}
    shared = sum(p.numel() for p in full.parameters()) - sum(full_counts.values())
    assert sum(p.numel() for p in two.parameters()) == shared + two_counts["image"] + two_counts["audio"]
    assert not any(".video" in n or ".fmri" in n for n, _ in two.named_parameters())


def test_a_model_directory_of_the_previous_format_loads_strictly_and_means_the_eight():
    data = json.loads((LEGACY / "model" / "config.json").read_text())
    assert "modalities" not in data and "audio_mel_bins" in data["inputs"]  # flat, pre-registry
    model = OneLLM.from_pretrained(LEGACY / "model")
    assert model.config.modalities == list(DEFAULT_MODALITIES)
    assert model.config.inputs.audio.mel_bins == data["inputs"]["audio_mel_bins"]
    assert model.config.inputs.video.frames == data["inputs"]["video_clips"] * data["inputs"]["video_crops"]


def test_synthetic_streams_do_not_depend_on_registry_order():
    # the eight built-ins keep the streams they always had (so the world is byte-identical to before); a new
    # modality's stream comes from its name
    assert [get(m).synth_stream for m in DEFAULT_MODALITIES] == list(range(8))
    import zlib

    from onellm.modalities.base import ClipPatches, LoaderSpec, ModalityDefinition

    d = ModalityDefinition(name="sonar", encoder_input=ClipPatches(), input_shape=lambda c: (3, 1, 1),
                           loader=LoaderSpec(lambda *a, **k: None, (".npy",)), caption_prompt="", noun="sonar")
    assert d.synth_stream == zlib.crc32(b"sonar")


# ---------------------------------------------------------------------------------------------------------
# Layering
def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node of a module except those under ``if TYPE_CHECKING:`` (type names only, never imported)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                todo += child.orelse
                continue
            todo.append(child)


def import_graph() -> dict[str, set[str]]:
    """module -> library modules it imports (any depth in the file: lazy imports count too)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                targets.append(target)
                targets += [f"{target}.{a.name}" for a in node.names]  # names that are submodules
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "onellm":
                targets += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets += [a.name for a in node.names if a.name.split(".")[0] == "onellm"]
            graph[module] |= {t for t in targets if t in files and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if state.get(n) is None and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if state.get(m) is None and (found := visit(m)):
            return found
    return None


def test_no_import_cycles_in_the_package():
    graph = import_graph()
    assert len(graph) > 60  # the walk sees the whole package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_loading_a_model_or_an_adapter_imports_nothing_from_training():
    graph = import_graph()
    reach, todo = set(), ["onellm.checkpoint", "onellm.adapters", "onellm.model.onellm", "onellm.processing"]
    while todo:
        m = todo.pop()
        if m not in reach:
            reach.add(m)
            todo += graph[m]
    assert not [m for m in reach if m.startswith("onellm.training")]


def test_modalities_are_named_only_in_their_own_files():
    """Outside onellm/modalities/ no module branches on a modality name (the registry holds every fact)."""
    pattern = ("== \"image\"", "== \"video\"", "== \"audio\"", "== \"point\"", "== \"depth\"", "== \"normal\"",
               "== \"imu\"", "== \"fmri\"", "Modality.", "MODALITY_SPECS", "in (\"depth\", \"normal\")")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "modalities" in path.parts or path.name == "modality.py":
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(PACKAGE)}: {p}" for p in pattern if p in text]
    assert not offenders, offenders


def test_a_training_checkpoint_of_the_previous_format_resumes(tmp_path):
    """tests/data/legacy_v1/checkpoints/step-000002 was written by the pre-registry code (its make_fixture.py): a
    recipe over the same data resumes from it (pickled optimizer/RNG files of that format are read with the
    weights-only unpickler) and continues with exactly the checkpoint's trainable weights."""
    import shutil

    from safetensors.torch import load_file

    from onellm.data.synth import generate_world
    from onellm.training import load_recipe, train

    world = generate_world(tmp_path / "world", 4, seed=0, modalities="image,audio",
                           config=OneLLMConfig.preset("onellm-7b", **{"inputs.fmri.voxels": 64}))
    run = tmp_path / "run"
    shutil.copytree(LEGACY / "checkpoints", run / "checkpoints")
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(f"""model: {LEGACY / 'model'}
output_dir: {run}
datasets: [{{manifest: {world['manifests']['alignment']}, modalities: [image]}}]
trainable: {{tokenizers: false, upm: [image]}}
micro_batch: 2
max_steps: 3
save_every: 100
num_workers: 0
report_to: []
optimizer: {{lr: 1.0e-3}}
""")
    lines: list[str] = []
    seen: dict = {}
    original = OneLLM.forward

    def spy(self, **kw):  # the trainable weights at the first step after the resume
        if not seen:
            seen.update({n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad})
        return original(self, **kw)

    OneLLM.forward = spy
    try:
        result = train(load_recipe(recipe_file), log=lines.append)
    finally:
        OneLLM.forward = original
    assert any("resumed from" in l and "step 2" in l for l in lines), lines
    assert result.steps == 3
    saved = load_file(str(LEGACY / "checkpoints" / "step-000002" / "trainable.safetensors"))
    assert set(saved) == set(seen) and all(torch.equal(saved[k], seen[k]) for k in saved)
