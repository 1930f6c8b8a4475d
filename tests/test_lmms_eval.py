"""The lmms-eval adapter (``onellm.evaluation.lmms_eval_model``, docs/lmms_eval.md).

lmms-eval's own CLI runs the tiny local task suite ``tests/data/lmms_tasks`` (image, video and audio questions and
an image multiple-choice task, on files of the synthetic world; JSON data through HF datasets' "json" builder,
nothing downloaded) on the conftest tiny model, and its logged answers must equal ``onellm infer --temperature 0``
on the same files and prompts; the metrics must be the ones computed from those answers. The adapter's pieces
(input mapping, generation kwargs, ``until``, batching, bad inputs, loglikelihood, multi-round) are tested in
process. Needs the ``lmms`` extra; without lmms-eval every test fails (never skipped).
"""
from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import shutil
import string
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

try:
    import lmms_eval  # noqa: F401

    LMMS_EVAL = True
except ImportError:
    LMMS_EVAL = False

INSTALL = ('pip install -c constraints.txt -e ".[lmms]" && pip install --no-deps -c constraints.txt '
           '"lmms-eval==0.7.3" (docs/lmms_eval.md)')
TASKS_SRC = Path(__file__).parent / "data" / "lmms_tasks"
GENERATE_TASKS = ("image", "video", "audio")
COUNTS = {"image": 6, "video": 3, "audio": 3}
MAX_NEW_TOKENS = 12  # every generate_until task of the suite
UNTIL = {"image": ["\n\n"], "video": ["\n\n"], "audio": ["."]}  # "\n\n": lmms-eval's default
ENTRY_POINT = "onellm = onellm.evaluation.lmms_eval_model:lmms_eval_manifest"


@pytest.fixture(autouse=True, scope="module")  # module scope: before the module's other fixtures
def _lmms_eval_installed():
    if not LMMS_EVAL:
        pytest.fail(f"lmms-eval is not installed: {INSTALL}", pytrace=False)


def expected_prompt(modality: str, question: str) -> str:
    """The task YAMLs' prompts (video: its ``onellm``-specific pre/post prompt)."""
    if modality == "video":
        return f"Watch the video. {question} Answer in a few words."
    return question


def cut(answer: str, until) -> str:
    for u in until:
        answer = answer.split(u)[0]
    return answer.strip()


def exact_match(prediction: str, reference: str) -> float:
    """lmms-eval's exact_match with ignore_case and ignore_punctuation."""
    table = str.maketrans("", "", string.punctuation)
    return float(prediction.lower().translate(table) == reference.lower().translate(table))


# ----------------------------------------------------------------------------------------------------------------
# The suite: synthetic files, documents, `onellm infer`'s answers, lmms-eval's CLI


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """The task folder (a copy of tests/data/lmms_tasks) with the synthetic world in it; documents per task."""
    from onellm.data.synth import generate_world
    from onellm.modalities.synth_common import COLOURS

    root = tmp_path_factory.mktemp("lmms")
    tasks = root / "tasks"
    shutil.copytree(TASKS_SRC, tasks, ignore=shutil.ignore_patterns("__pycache__"))
    world = generate_world(tasks / "world", 3, 0, split="test", modalities=list(GENERATE_TASKS))
    requests = [json.loads(line) for line in Path(world["manifests"]["requests"]).read_text().splitlines()]
    docs: dict[str, list[dict]] = {m: [] for m in GENERATE_TASKS}
    for r in requests:
        m = r["inputs"][0]["modality"]
        if len(docs[m]) < COUNTS[m]:
            docs[m].append({"id": r["id"], "path": f"world/test/{r['inputs'][0]['path']}", "question": r["prompt"],
                            "answer": r["answer"]})
    docs["image_mc"] = [{"id": r["id"], "path": f"world/test/{r['inputs'][0]['path']}", "question": r["prompt"],
                         "choices": list(COLOURS), "label": list(COLOURS).index(r["answer"])}
                        for r in requests if r["inputs"][0]["modality"] == "image" and r.get("attribute") == "colour"]
    assert len(docs["image_mc"]) == 3 and all(len(docs[m]) == COUNTS[m] for m in GENERATE_TASKS)
    return SimpleNamespace(root=root, tasks=tasks, docs=docs)


@pytest.fixture(scope="module")
def infer_answers(suite, model_dir):
    """``onellm infer --temperature 0`` on every generate_until document: {(task, doc index): answer}."""
    from onellm.cli import main

    manifest, output = suite.root / "requests.jsonl", suite.root / "answers.jsonl"
    rows = [{"id": f"{m}-{i}", "inputs": [{"modality": m, "path": str(suite.tasks / d["path"])}],
             "prompt": expected_prompt(m, d["question"])}
            for m in GENERATE_TASKS for i, d in enumerate(suite.docs[m])]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["infer", "--model", str(model_dir), "--input", str(manifest), "--output", str(output),
                 "--temperature", "0", "--max-new-tokens", str(MAX_NEW_TOKENS), "--batch-size", "4",
                 "--num-workers", "0", "--device", "cpu", "--dtype", "fp32"]) == 0
    answers = {}
    for line in output.read_text().splitlines():
        row = json.loads(line)
        assert "answer" in row, row
        task, i = row["id"].rsplit("-", 1)
        answers[(task, int(i))] = row["answer"]
    assert len(answers) == len(rows)
    return answers


@pytest.fixture(scope="module")
def task_dir(suite, infer_answers):
    """The task folder with its JSON data written. Document 0 of each generate_until task gets the model's own
    answer as its reference, so exact_match has a hit to count (the other references are the world's answers)."""
    for task, docs in suite.docs.items():
        docs = [dict(d) for d in docs]
        if task in GENERATE_TASKS:
            docs[0]["answer"] = cut(infer_answers[(task, 0)], UNTIL[task])
        suite.docs[task] = docs
        (suite.tasks / f"{task}.json").write_text("".join(json.dumps(d) + "\n" for d in docs))
    return suite.tasks


def entry_point_registered() -> bool:
    eps = importlib.metadata.entry_points(group="lmms_eval.models")
    return any(ep.name == "onellm" and ep.value == ENTRY_POINT.split(" = ")[1] for ep in eps)


@pytest.fixture(scope="module")
def entry_point_path(tmp_path_factory) -> Path | None:
    """None when the installed onellm distribution declares the ``lmms_eval.models`` entry point (setup.py);
    else a folder holding a distribution that declares exactly that entry point, for PYTHONPATH / sys.path."""
    if entry_point_registered():
        return None
    root = tmp_path_factory.mktemp("entry-point")
    dist = root / "onellm_lmms_entry_point-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: onellm-lmms-entry-point\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[lmms_eval.models]\n{ENTRY_POINT}\n")
    return root


@pytest.fixture(scope="module")
def cli_run(task_dir, model_dir, entry_point_path, tmp_path_factory):
    """``python -m lmms_eval --model onellm ... --tasks onellm_synth --include_path TASKS --log_samples``."""
    out = tmp_path_factory.mktemp("lmms-out")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HOME=str(out / "hf-home"), LMMS_EVAL_DATASETS_CACHE=str(out / "datasets-cache"))
    if entry_point_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(entry_point_path), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "onellm",
           "--model_args", f"pretrained={model_dir},device=cpu,dtype=fp32,batch_size=3",
           "--tasks", "onellm_synth", "--include_path", str(task_dir), "--output_path", str(out / "results"),
           "--log_samples", "--verbosity", "WARNING"]
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    results = glob.glob(str(out / "results" / "*" / "*_results.json"))
    assert len(results) == 1, (results, proc.stderr[-3000:])
    samples = {}
    for task in (*GENERATE_TASKS, "image_mc"):
        files = glob.glob(str(out / "results" / "*" / f"*_samples_onellm_synth_{task}.jsonl"))
        assert len(files) == 1, files
        rows = [json.loads(line) for line in Path(files[0]).read_text().splitlines()]
        samples[task] = sorted(rows, key=lambda r: r["doc_id"])
    return SimpleNamespace(results=json.loads(Path(results[0]).read_text()), samples=samples, stdout=proc.stdout)


# ----------------------------------------------------------------------------------------------------------------
# End to end


def test_cli_answers_equal_onellm_infer(cli_run, infer_answers, suite):
    for task in GENERATE_TASKS:
        rows = cli_run.samples[task]
        assert [r["doc_id"] for r in rows] == list(range(COUNTS[task]))
        for row in rows:
            doc = suite.docs[task][row["doc_id"]]
            assert row["input"] == expected_prompt(task, doc["question"])  # the task's prompt reached the model
            assert row["filtered_resps"] == cut(infer_answers[(task, row["doc_id"])], UNTIL[task]), (task, row)
            assert 1 <= row["token_counts"][0]["output_tokens"] <= MAX_NEW_TOKENS
    # the answers are not all alike: inputs and prompts made a difference
    assert len({r["filtered_resps"] for t in GENERATE_TASKS for r in cli_run.samples[t]}) >= 4


def test_cli_metrics_are_computed_from_the_answers(cli_run, suite):
    results = cli_run.results["results"]
    for task in GENERATE_TASKS:
        rows = cli_run.samples[task]
        scores = [exact_match(r["filtered_resps"], suite.docs[task][r["doc_id"]]["answer"]) for r in rows]
        assert [r["exact_match"] for r in rows] == scores
        assert scores[0] == 1.0  # document 0's reference is the model's answer
        assert results[f"onellm_synth_{task}"]["exact_match,none"] == pytest.approx(sum(scores) / len(scores))
    rows = cli_run.samples["image_mc"]
    picks = [int(np.argmin([float(nll) for nll, _ in r["filtered_resps"]])) for r in rows]  # NLLs: lowest wins
    accs = [float(p == suite.docs["image_mc"][r["doc_id"]]["label"]) for p, r in zip(picks, rows)]
    assert [r["acc"] for r in rows] == accs
    assert results["onellm_synth_image_mc"]["acc,none"] == pytest.approx(sum(accs) / len(accs))
    assert "onellm_synth_image_mc" in cli_run.stdout and "exact_match" in cli_run.stdout  # the table printed


def reference_nll(model, processor, question: str, image_path, continuation: str) -> tuple[float, bool]:
    """(-log P(continuation | chat prompt, image): the model's own loss summed over the continuation's tokens,
    whether each of those tokens is the argmax); one sample, no batching."""
    from onellm.constants import IGNORE_INDEX

    prompt = processor.prompt_ids(question)
    cont = processor.text.encode(continuation.strip())
    inputs = [("image", processor.load_input("image", image_path))] if image_path is not None else []
    sample = processor.pack(prompt + cont, [IGNORE_INDEX] * len(prompt) + cont, inputs)
    batch = processor.collate([sample], padding_side="right", with_labels=True)
    with torch.no_grad():
        out = model(**batch)
    assert out.num_tokens == len(cont)
    picked = out.logits[0, -len(cont) - 1:-1].argmax(-1).tolist()
    return float(out.loss_sum), picked == cont


def test_cli_multiple_choice_loglikelihoods_are_the_models(cli_run, suite, model_dir):
    from onellm import OneLLMForConditionalGeneration, OneLLMProcessor

    model = OneLLMForConditionalGeneration.from_pretrained(model_dir, device="cpu", dtype=torch.float32)
    processor = OneLLMProcessor.from_pretrained(model_dir)
    for row in cli_run.samples["image_mc"]:
        doc = suite.docs["image_mc"][row["doc_id"]]
        assert len(row["filtered_resps"]) == len(doc["choices"])
        for (nll, greedy), choice in zip(row["filtered_resps"], doc["choices"]):
            ref, ref_greedy = reference_nll(model, processor, doc["question"], suite.tasks / doc["path"], " " + choice)
            assert float(nll) == pytest.approx(ref, rel=1e-5, abs=1e-5) and float(nll) > 0
            assert str(greedy) == str(ref_greedy)


# ----------------------------------------------------------------------------------------------------------------
# In process: the adapter object


@pytest.fixture(scope="module")
def lm(model_dir):
    from onellm.evaluation.lmms_eval_model import OneLLMLmms

    return OneLLMLmms(pretrained=str(model_dir), device="cpu", dtype="fp32", batch_size=2)


def instance(request_type: str, args: tuple, doc_id: int = 0):
    from lmms_eval.api.instance import Instance

    return Instance(request_type=request_type, arguments=args, idx=0,
                    metadata={"task": "t", "doc_id": doc_id, "repeats": 1})


def image_visual(doc):
    from PIL import Image

    with Image.open(doc["path"]) as img:
        return [img.convert("RGB")]


@pytest.fixture
def image_docs(lm, suite):
    docs = [dict(d, path=str(suite.tasks / d["path"])) for d in suite.docs["image"]]
    lm.task_dict = {"t": {"test": docs}}
    return docs


def answers(lm, docs, gen_kwargs, visual=image_visual, context=None):
    from lmms_eval.api.instance import unwrap_generation_output

    reqs = [instance("generate_until", (context or d["question"], dict(gen_kwargs), visual, i, "t", "test"), i)
            for i, d in enumerate(docs)]
    return [unwrap_generation_output(x) for x in lm.generate_until(reqs)]


def test_generate_until_equals_model_chat_and_batching_does_not_matter(lm, model_dir, image_docs):
    from onellm import OneLLMForConditionalGeneration, OneLLMProcessor

    docs = image_docs[:4]
    greedy = {"max_new_tokens": 8, "temperature": 0, "do_sample": False}
    got = answers(lm, docs, greedy)
    model = OneLLMForConditionalGeneration.from_pretrained(model_dir, device="cpu", dtype=torch.float32)
    processor = OneLLMProcessor.from_pretrained(model_dir)
    for (text, counts), doc in zip(got, docs):
        assert text == model.chat(processor, doc["question"], image=doc["path"], max_new_tokens=8, temperature=0)
        assert counts.output_tokens <= 8 and counts.input_tokens > 0
    before = lm.batch_size_per_gpu
    try:
        for size in (1, 4):
            lm.batch_size_per_gpu = size
            assert [t for t, _ in answers(lm, docs, greedy)] == [t for t, _ in got]
    finally:
        lm.batch_size_per_gpu = before


def test_until_cuts_the_answer_and_stops_generation(lm, image_docs):
    full = answers(lm, image_docs[:4], {"max_new_tokens": 12, "temperature": 0})
    i, (text, counts) = next((i, a) for i, a in enumerate(full) if len(a[0].strip()) >= 8)
    answer = text.strip()
    # a 2-character stop string whose first occurrence is at index 4 or later, so that cutting leaves a start
    stop = next(answer[k:k + 2] for k in range(4, len(answer) - 1) if answer.find(answer[k:k + 2]) == k)
    got = answers(lm, [image_docs[i]], {"max_new_tokens": 12, "temperature": 0, "until": [stop]})[0]
    assert got[0] == text.split(stop)[0].strip() and got[0]
    assert got[1].output_tokens < counts.output_tokens  # generation stopped at the until string
    assert answers(lm, [image_docs[i]], {"max_new_tokens": 12, "until": stop})[0][0] == got[0]  # a string works


def test_generation_kwargs_reach_the_generation(lm, image_docs, monkeypatch):
    import onellm.generation as generation

    seen = []
    real = generation.generate

    def spy(model, processor, batch, gen=None, **kw):
        seen.append(gen)
        return real(model, processor, batch, gen, **kw)

    monkeypatch.setattr(generation, "generate", spy)
    torch.manual_seed(0)
    sampled = answers(lm, image_docs[:2], {"max_new_tokens": 5, "temperature": 0.7, "top_p": 0.9, "do_sample": True})
    gen = seen[-1]
    assert (gen.max_new_tokens, gen.temperature, gen.top_p, gen.stop_strings) == (5, 0.7, 0.9, ("###", ))
    assert all(isinstance(t, str) and c.output_tokens <= 5 for t, c in sampled)
    answers(lm, image_docs[:1], {"temperature": 0.7, "do_sample": False, "until": ["\n\n"]})
    assert (seen[-1].temperature, seen[-1].max_new_tokens, seen[-1].stop_strings) == (0.0, 128, ("###", "\n\n"))


def test_parse_generation_kwargs():
    from onellm.evaluation.lmms_eval_model import parse_generation_kwargs

    g = parse_generation_kwargs(None)
    assert (g.max_new_tokens, g.temperature, g.top_p, g.until, g.ignored) == (128, 0.0, 0.75, (), ())
    g = parse_generation_kwargs({"max_gen_toks": 7, "temperature": "0.5", "top_p": None, "until": "Q:"})
    assert (g.max_new_tokens, g.temperature, g.top_p, g.until) == (7, 0.5, 0.75, ("Q:",))
    g = parse_generation_kwargs({"temperature": 1.0, "do_sample": "false", "num_beams": 3, "foo": 1}, 64)
    assert (g.max_new_tokens, g.temperature, g.ignored) == (64, 0.0, ("foo", "num_beams=3"))
    with pytest.raises(ValueError, match="until"):
        parse_generation_kwargs({"until": 5})


def test_pil_images_and_audio_arrays_equal_the_file_loaders(lm, suite, tmp_path):
    import soundfile
    from PIL import Image

    from onellm.evaluation.lmms_eval_model import audio_from_array, image_from_pil, to_model_inputs

    processor = lm.processor
    images = sorted((suite.tasks / "world" / "test" / "image").iterdir())
    assert {p.suffix for p in images} == {".png", ".jpg"}
    for path in images:
        with Image.open(path) as img:
            assert torch.equal(image_from_pil(img, lm.config), processor.load_input("image", path))
    wav = sorted((suite.tasks / "world" / "test" / "audio").iterdir())[0]
    array, rate = soundfile.read(wav, dtype="float32")
    assert torch.equal(audio_from_array(array, rate, lm.config), processor.load_input("audio", wav))
    # stereo at another rate: (T, C) as soundfile reads it, resampled to 16 kHz like the loader
    t = np.arange(11025) / 22050
    stereo = np.stack([np.sin(2 * np.pi * 300 * t), 0.5 * np.sin(2 * np.pi * 700 * t)], 1).astype(np.float32)
    soundfile.write(tmp_path / "stereo.wav", stereo, 22050, subtype="FLOAT")
    array, rate = soundfile.read(tmp_path / "stereo.wav", dtype="float32")
    assert array.shape == (11025, 2) and rate == 22050
    expected = processor.load_input("audio", tmp_path / "stereo.wav")
    assert torch.equal(audio_from_array(array, rate, lm.config), expected)
    assert torch.equal(audio_from_array(array.T, rate, lm.config), expected)
    # a file path goes to the loader of its extension; a manifest input dict reaches any modality
    video = sorted((suite.tasks / "world" / "test" / "video").iterdir())[0]
    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).random((300, 6)).astype(np.float32))
    got = to_model_inputs([str(video), video, {"array": array, "sampling_rate": rate},
                           {"modality": "point", "path": str(tmp_path / "cloud.npy")}], processor)
    assert [m for m, _ in got] == ["video", "video", "audio", "point"]
    assert torch.equal(got[0][1], processor.load_input("video", video)) and torch.equal(got[2][1], expected)
    assert torch.equal(got[3][1], processor.load_input("point", tmp_path / "cloud.npy"))


def test_unusable_visuals(lm, suite, image_docs):
    from onellm.evaluation.lmms_eval_model import UnsupportedVisual, to_model_inputs

    with pytest.raises(UnsupportedVisual, match="PIL images"):
        to_model_inputs([b"raw bytes"], lm.processor)
    image_only = SimpleNamespace(config=SimpleNamespace(modalities=["image"], vision=lm.config.vision),
                                 load_input=lm.processor.load_input)
    with pytest.raises(UnsupportedVisual, match="no audio modality"):
        to_model_inputs([{"array": np.zeros(16000, np.float32), "sampling_rate": 16000}], image_only)
    with pytest.raises(ValueError, match="no modality of this model reads"):
        to_model_inputs(["notes.txt"], lm.processor)
    # a missing file: answered "" with a warning (as onellm infer writes an error line), or raised
    missing = [dict(image_docs[0], path=str(suite.root / "missing.mp4"))] + image_docs[:1]
    lm.task_dict = {"t": {"test": missing}}
    before = len(lm.failures)
    got = answers(lm, missing, {"max_new_tokens": 4}, visual=lambda d: [d["path"]] if d["path"].endswith(".mp4")
                  else image_visual(d))
    assert got[0][0] == "" and got[1][0] != "" and len(lm.failures) == before + 1
    assert "missing.mp4" in lm.failures[-1][1]
    lm.skip_bad_inputs = False
    try:
        with pytest.raises(Exception, match="missing.mp4"):
            answers(lm, missing[:1], {"max_new_tokens": 4}, visual=lambda d: [d["path"]])
    finally:
        lm.skip_bad_inputs = True


def test_loglikelihood_is_the_continuations_nll(lm, image_docs):
    from lmms_eval.api.instance import unwrap_generation_output

    doc = image_docs[1]
    reqs = [instance("loglikelihood", (doc["question"], f" {c}", image_visual, 1, "t", "test"), 1)
            for c in ("red", "green blue")]
    reqs.append(instance("loglikelihood", ("", "red")))  # acc_mutual_info's unconditional form: no inputs
    reqs.append(instance("loglikelihood", (doc["question"], lambda d: " " + d["answer"], image_visual, 1, "t",
                                           "test"), 1))
    got = [unwrap_generation_output(x)[0] for x in lm.loglikelihood(reqs)]
    assert all(isinstance(g, tuple) and isinstance(g[0], float) and isinstance(g[1], bool) for g in got)
    refs = [reference_nll(lm.model, lm.processor, doc["question"], doc["path"], c) for c in ("red", "green blue")]
    refs.append(reference_nll(lm.model, lm.processor, "", None, "red"))
    refs.append(reference_nll(lm.model, lm.processor, doc["question"], doc["path"], doc["answer"]))
    for (nll, greedy), (ref, ref_greedy) in zip(got, refs):
        assert nll == pytest.approx(ref, rel=1e-5) and greedy == ref_greedy
    assert got[0][0] != pytest.approx(got[1][0])
    # greedy is True for the token greedy decoding picks
    from onellm.generation import GenerationConfig, generate

    sample = lm.processor.prompt_sample(doc["question"], [("image", lm.processor.load_input("image", doc["path"]))])
    batch = lm.processor.collate([sample], padding_side="left", with_labels=False)
    token = generate(lm.model, lm.processor, batch, GenerationConfig(max_new_tokens=1, temperature=0)).token_ids[0]
    text = lm.processor.decode(token)
    if lm.processor.text.encode(text.strip()) == token:  # the token re-encodes to itself (a word-initial piece)
        mine = lm.loglikelihood([instance("loglikelihood", (doc["question"], " " + text, image_visual, 1, "t",
                                                            "test"), 1)])
        assert unwrap_generation_output(mine[0])[0][1] is True


def test_generate_until_multi_round(lm, image_docs):
    from lmms_eval.api.instance import unwrap_generation_output

    calls = []

    def doc_to_text(doc, previous_output=None, round_idx=None, previous_round_info=None):
        calls.append((round_idx, list(previous_output), previous_round_info))
        if round_idx == 2:
            return None, None, True, previous_output, None
        return image_visual(doc), "What shape is shown?", False, previous_output, {"round": round_idx}

    req = instance("generate_until_multi_round", (image_docs[0]["question"], {"max_new_tokens": 6}, image_visual,
                                                  doc_to_text, 0, "t", "test"))
    (rounds,) = lm.generate_until_multi_round([req])
    single = answers(lm, image_docs[:1], {"max_new_tokens": 6})[0][0]
    second = answers(lm, image_docs[:1], {"max_new_tokens": 6}, context="What shape is shown?")[0][0]
    assert rounds == [single, second]
    assert [c[0] for c in calls] == [1, 2] and calls[1][2] == {"round": 1} and calls[0][1] == [single]
    assert unwrap_generation_output(rounds)[0] == rounds


def test_vllm_engine_gets_the_packed_prompts_and_tensors(lm, image_docs, monkeypatch):
    """engine=vllm's wiring, with a stand-in for OneLLMEngine (vLLM is not in this environment): the requests are
    ``sample_request`` of the same packed samples as the HF path, the sampling options and until reach it."""
    from onellm.vllm.engine import EngineOutput

    seen = {}

    class StandIn:
        def generate(self, requests, gen=None, seed=None, use_tqdm=False):
            seen.update(requests=list(requests), gen=gen, seed=seed)
            raw = [" first. second###rest"] * len(requests)
            return EngineOutput([r.split("###")[0].strip() for r in raw], raw, [[5, 6, 7]] * len(requests))

    monkeypatch.setattr(lm, "vllm", StandIn())
    got = answers(lm, image_docs[:2], {"max_new_tokens": 4, "temperature": 0.5, "until": ["."]})
    assert [t for t, _ in got] == ["first", "first"] and [c.output_tokens for _, c in got] == [3, 3]
    assert (seen["gen"].max_new_tokens, seen["gen"].temperature, seen["gen"].stop_strings) == (4, 0.5, ("###", "."))
    assert len(seen["seed"]) == 2 and len(set(seen["seed"])) == 2  # one sampling seed per request
    processor = lm.processor
    expected = {}
    for d in image_docs[:2]:
        sample = processor.pack(processor.prompt_ids(d["question"]), None,
                                [("image", processor.load_input("image", d["path"]))])
        expected[tuple(sample.input_ids)] = sample.inputs[0][1]
    assert len(seen["requests"]) == 2
    for req in seen["requests"]:
        (image,) = req["multi_modal_data"]["image"]
        assert torch.equal(image, expected[tuple(req["prompt_token_ids"])])
    monkeypatch.setattr(lm, "model", None)
    with pytest.raises(NotImplementedError, match="engine=hf"):
        lm.loglikelihood([instance("loglikelihood", ("q", " a", image_visual, 0, "t", "test"))])


# ----------------------------------------------------------------------------------------------------------------
# Registration and arguments


def test_entry_point_registers_onellm(entry_point_path, monkeypatch):
    from lmms_eval.models import MODEL_REGISTRY_V2, get_model

    from onellm.evaluation.lmms_eval_model import OneLLMLmms

    if entry_point_path is not None:
        monkeypatch.syspath_prepend(str(entry_point_path))
        importlib.invalidate_caches()
    assert entry_point_registered()
    MODEL_REGISTRY_V2.load_entrypoint_manifests(overwrite=True)  # what `import lmms_eval.models` does
    assert get_model("onellm") is OneLLMLmms
    assert MODEL_REGISTRY_V2.resolve("onellm").model_type == "simple"


def test_model_args(model_dir):
    from onellm.evaluation.lmms_eval_model import OneLLMLmms

    lm = OneLLMLmms.create_from_arg_string(f"pretrained={model_dir},device=cpu,dtype=fp32,batch_size=3",
                                           {"batch_size": 1, "max_batch_size": None, "device": None})
    assert lm.batch_size == 3 and str(lm.device) == "cpu" and next(lm.model.parameters()).dtype == torch.float32
    lm = OneLLMLmms.create_from_arg_string(f"pretrained={model_dir},device=cpu", {"batch_size": "2"})
    assert lm.batch_size == 2
    with pytest.raises(ValueError, match="engine must be hf or vllm"):
        OneLLMLmms(pretrained=str(model_dir), device="cpu", engine="tgi")
    with pytest.raises(ValueError, match="template must be chat or none"):
        OneLLMLmms(pretrained=str(model_dir), device="cpu", template="llava")
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        OneLLMLmms(pretrained=str(model_dir / "nope"))
    try:
        import vllm  # noqa: F401
    except ImportError:  # the main environment: vLLM lives in .venv-vllm (docs/vllm.md)
        with pytest.raises(ImportError, match="engine=vllm needs vLLM"):
            OneLLMLmms(pretrained=str(model_dir), device="cpu", engine="vllm")
