"""`onellm eval`: every benchmark definition end to end on tiny fixtures in the public formats, scoring on
hand-written answers, resuming, missing data, bad prediction lines, default output folders, the results table
with the paper's numbers and splits (submission files: test_submission.py; scene rule: test_scene_labels.py)."""
import argparse
import json
import shutil
from pathlib import Path

import pytest

from onellm.cli import main
from onellm.commands import eval as eval_cmd
from onellm.evaluation import metrics
from onellm.evaluation.engine import benchmarks_dir, default_output, load_benchmarks, read_predictions
from onellm.evaluation.report import merge_rows, paper_table

from eval_fixtures import DATASETS, NYU_LABELS, write_all, write_gqa, write_scenes

BENCHMARKS = load_benchmarks(benchmarks_dir())
ALL = [b for b in BENCHMARKS if b != "synth"]
FAST = ["--max-new-tokens", "6", "--num-workers", "0", "--batch-size", "4", "--temperature", "0"]


def run_eval(*args: str) -> int:
    """The subcommand through its own parser (works before and after cli.py registers it)."""
    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    return eval_cmd.run(parser.parse_args(list(args)))


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def table_rows(table: str) -> list[str]:
    """The data rows of a results.md table (header and separator left out)."""
    rows = [x for x in table.splitlines() if x.startswith("| ")]
    return rows[1:]


def row_of(table: str, name: str) -> list[str]:
    """The cells of benchmark ``name``'s main row."""
    line = next(x for x in table.splitlines() if x.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip("|").split("|")]


COLUMNS = ["benchmark", "split", "modality", "metric", "ours", "paper", "paper split", "released", "n"]


pytestmark = pytest.mark.filterwarnings("ignore:java not found")


@pytest.fixture(autouse=True)
def no_java(monkeypatch):
    """The Java tokenizer and METEOR cost ~10 s per caption benchmark: use the pure-Python path here
    (test_caption_scoring_with_java covers Java)."""
    monkeypatch.setattr(metrics, "java_available", lambda: False)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaldata")
    return root, write_all(root)


@pytest.fixture(scope="module")
def all_run(model_dir, data_root, tmp_path_factory):
    """`--benchmark all` over every fixture dataset, with Java off (module scope: the model runs once)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(metrics, "java_available", lambda: False)
    out = tmp_path_factory.mktemp("evalout")
    code = run_eval("--model", str(model_dir), "--benchmark", "all", "--data", str(data_root[0]), "--output",
                    str(out), *FAST)
    mp.undo()
    return code, out


def test_all_yaml_lists_every_paper_benchmark():
    import yaml

    entries = yaml.safe_load((benchmarks_dir().parent / "all.yaml").read_text())["benchmarks"]
    names = [e if isinstance(e, str) else e["name"] for e in entries]
    assert sorted(names) == sorted(ALL)
    assert {b.data_dir for b in BENCHMARKS.values() if b.name != "synth"} == set(DATASETS)


def test_every_definition_has_its_docs_section():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    for bench in BENCHMARKS.values():
        assert f'<a id="{bench.doc_anchor}"></a>' in docs, bench.name
        assert bench.primary_metric in bench.shown_metrics and set(bench.paper or {}) <= set(bench.shown_metrics)


@pytest.mark.parametrize("name", ALL)
def test_read_gives_records_in_public_format(name, data_root):
    root, ids = data_root
    bench = BENCHMARKS[name]
    records = bench.read(root / bench.data_dir)
    assert [r.id for r in records] == ids[bench.data_dir]
    for r in records:
        assert r.prompt and r.extra["task"] in ("caption", "qa", "classification")
        assert all(Path(ref.path).is_file() for ref in r.inputs)
        assert r.extra.get("references") or r.answer


def test_every_benchmark_end_to_end(all_run, data_root, capsys):
    code, out = all_run
    assert code == 0
    ids = data_root[1]
    table = (out / "results.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert sorted(r["benchmark"] for r in results) == sorted(ALL)
    for name in ALL:
        bench = BENCHMARKS[name]
        rows = lines(out / name / "predictions.jsonl")
        assert sorted(r["id"] for r in rows) == sorted(ids[bench.data_dir]), name
        assert all(isinstance(r["answer"], str) for r in rows), rows
        m = json.loads((out / name / "metrics.json").read_text())
        assert m["n"] == len(ids[bench.data_dir]) and m["n_errors"] == 0 and m["n_total"] == m["n"]
        assert m["generation"] == {"max_new_tokens": 6, "temperature": 0.0, "top_p": 0.75,
                                   "stop_strings": ["###"], "min_new_tokens": 0}
        assert m["template"] == "chat" and m["split"] == bench.default_split
        if bench.is_remote(m["split"]):  # MM-Vet: the grader's file instead of scores
            assert m["metrics"] == {} and Path(m["submission"]["file"]).is_file()
        else:
            assert bench.primary_metric in m["metrics"], (name, m["metrics"])
        cells = dict(zip(COLUMNS, row_of(table, name)))
        assert cells["modality"] == bench.modality and "skipped" not in cells["ours"]
        assert cells["split"] == bench.default_split and cells["n"] == str(m["n"])
    cells = dict(zip(COLUMNS, row_of(table, "nocaps")))
    assert cells["metric"] == "CIDEr" and cells["paper"] == "115.9" and cells["paper split"] == "val* (Tab. 1)"
    assert row_of(table, "objaverse_caption")[5] == "42.2 / 45.3 / 20.3"  # the paper's three numbers next to ours
    assert row_of(table, "coco_caption")[7].startswith("Karpathy val")  # the released script's other split
    assert "mmvet_results.json" in row_of(table, "mmvet")[4]
    nocaps = json.loads((out / "nocaps" / "metrics.json").read_text())["metrics"]
    assert {"in-domain/CIDEr", "out-domain/CIDEr", "BLEU-1", "ROUGE-L"} <= set(nocaps)
    vqa = json.loads((out / "vqav2" / "metrics.json").read_text())["metrics"]
    assert {"yes/no/accuracy", "number/accuracy", "other/accuracy"} <= set(vqa)
    # per-group rows under the means: nocaps per domain, VQAv2 per answer type
    for group, value in [("in-domain", nocaps["in-domain/CIDEr"]), ("out-domain", nocaps["out-domain/CIDEr"])]:
        assert row_of(table, f"nocaps · {group}")[4] == f"{value:.1f}"
    assert row_of(table, "vqav2 · yes/no")[4] == f"{vqa['yes/no/accuracy']:.1f}"
    assert "All numbers are percentages" in table


def test_rerun_resumes_without_generating(all_run, model_dir, data_root, monkeypatch):
    _, out = all_run
    before = {n: (out / n / "predictions.jsonl").read_text() for n in ALL}
    metrics_before = {n: json.loads((out / n / "metrics.json").read_text())["metrics"] for n in ALL}
    import onellm.inference

    def no_model(*a, **k):
        raise AssertionError("everything is answered: the model must not even load")

    monkeypatch.setattr(onellm.inference, "load_for_inference", no_model)
    assert run_eval("--model", str(model_dir), "--benchmark", "all", "--data", str(data_root[0]), "--output",
                    str(out), *FAST) == 0
    for n in ALL:
        assert (out / n / "predictions.jsonl").read_text() == before[n]
        assert json.loads((out / n / "metrics.json").read_text())["metrics"] == metrics_before[n]


def test_resume_appends_only_new_items_and_refuses_other_settings(model_dir, data_root, tmp_path, capsys):
    root = data_root[0] / "vqav2"
    args = ["--model", str(model_dir), "--benchmark", "vqav2", "--data", str(root), "--output", str(tmp_path)]
    assert run_eval(*args, "--limit", "1", *FAST) == 0
    first = (tmp_path / "vqav2" / "predictions.jsonl").read_text().splitlines()
    assert len(first) == 1 and json.loads(first[0])["gt"] == "no"
    assert run_eval(*args, "--limit", "2", *FAST) == 0
    second = (tmp_path / "vqav2" / "predictions.jsonl").read_text().splitlines()
    assert len(second) == 2 and second[0] == first[0]
    capsys.readouterr()
    assert run_eval(*args, *FAST[:-2], "--temperature", "0.5") == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "temperature" in err


def test_missing_data_names_path_and_docs(model_dir, tmp_path, capsys):
    base = ["--model", str(model_dir), "--output", str(tmp_path / "o")]
    assert run_eval(*base, "--benchmark", "gqa", "--data", str(tmp_path / "nowhere")) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and "docs/evaluation.md#gqa" in err
    (tmp_path / "empty").mkdir()
    assert run_eval(*base, "--benchmark", "clotho_caption", "--data", str(tmp_path / "empty")) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "empty" / "clotho_captions_evaluation.csv") in err
    assert "docs/evaluation.md#clotho-caption" in err
    write_gqa(tmp_path / "gqa")
    shutil.rmtree(tmp_path / "gqa" / "images")
    assert run_eval(*base, "--benchmark", "gqa", "--data", str(tmp_path / "gqa")) == 2
    err = capsys.readouterr().err
    assert "n288870.jpg" in err and "docs/evaluation.md#gqa" in err
    assert run_eval("--model", str(tmp_path / "no-model"), "--benchmark", "gqa", "--data", str(tmp_path)) == 2
    assert "model directory not found" in capsys.readouterr().err


def test_all_skips_missing_datasets_and_still_writes_table(model_dir, tmp_path, capsys):
    write_gqa(tmp_path / "data" / "gqa")
    assert run_eval("--model", str(model_dir), "--benchmark", "all", "--data", str(tmp_path / "data"),
                    "--output", str(tmp_path / "o"), *FAST) == 0
    table = (tmp_path / "o" / "results.md").read_text()
    assert table in capsys.readouterr().out
    assert len(table_rows(table)) == len(ALL)  # gqa has no breakdown; skipped rows have none
    gqa = dict(zip(COLUMNS, row_of(table, "gqa")))
    assert "skipped" not in gqa["ours"] and gqa["paper"] == "59.5" and gqa["n"] == "2"
    assert gqa["paper split"] == "test-dev balanced* (Tab. 1)"
    vqa = dict(zip(COLUMNS, row_of(table, "vqav2")))
    assert vqa["ours"] == f"skipped (data not found: {tmp_path / 'data' / 'vqav2'})" and vqa["paper"] == "71.6"
    assert not (tmp_path / "o" / "vqav2").exists()


def test_synth_per_modality_and_template_none(model_dir, tmp_path):
    from onellm.data.synth import generate_world

    world = generate_world(tmp_path / "world", per_modality=1, seed=0, split="test")
    out = tmp_path / "o"
    assert run_eval("--model", str(model_dir), "--benchmark", "synth", "--data", world["root"], "--output",
                    str(out), "--limit", "2", *FAST) == 0
    rows = lines(out / "synth" / "predictions.jsonl")
    assert len(rows) == 16  # 2 requests (caption + first question) per modality
    m = json.loads((out / "synth" / "metrics.json").read_text())["metrics"]
    for mod in ("image", "video", "audio", "point", "depth", "normal", "imu", "fmri"):
        assert {f"{mod}/caption_acc", f"{mod}/qa_acc", f"{mod}/chance"} <= set(m)
    assert {"caption_acc", "qa_acc", "chance"} <= set(m)
    # an alignment-only model: caption requests only, with an empty prompt
    assert run_eval("--model", str(model_dir), "--benchmark", "synth", "--data", world["root"], "--output",
                    str(tmp_path / "raw"), "--template", "none", *FAST) == 0
    rows = lines(tmp_path / "raw" / "synth" / "predictions.jsonl")
    assert len(rows) == 8 and all(r["id"].endswith("-caption") for r in rows)
    m = json.loads((tmp_path / "raw" / "synth" / "metrics.json").read_text())
    assert m["template"] == "none" and "qa_acc" not in m["metrics"] and "image/caption_acc" in m["metrics"]
    # results.md: the means, then one row per modality (modality column = that modality)
    table = (out / "results.md").read_text()
    metrics_ = json.loads((out / "synth" / "metrics.json").read_text())["metrics"]
    for mod in ("image", "imu", "fmri"):
        cells = row_of(table, f"synth · {mod}")
        assert cells[2] == mod and cells[4] == " / ".join(
            f"{metrics_[f'{mod}/{k}']:.1f}" for k in ("caption_acc", "qa_acc", "chance"))


# ----------------------------------------------------------------------------------------------------------------
# Scoring with hand-written answers (known numbers)
# ----------------------------------------------------------------------------------------------------------------
def score(name, data_root, answers):
    bench = BENCHMARKS[name]
    records = bench.read(data_root[0] / bench.data_dir)
    return bench.score(dict(zip([r.id for r in records], answers)), records)


def test_vqa_accuracy_counts_annotators(data_root):
    # q1: "yes" by 3 of 10 -> 90; q2: "two" normalised to "2" (9 of 10) -> 100; q3: wrong -> 0
    m = score("vqav2", data_root, ["Yes", "two", "blue"])
    assert m["accuracy"] == pytest.approx(190 / 3) and m["yes/no/accuracy"] == pytest.approx(90)
    assert m["number/accuracy"] == pytest.approx(100) and m["other/accuracy"] == 0


def test_gqa_exact_match(data_root):
    assert score("gqa", data_root, ["Yes.", "a cup"])["accuracy"] == pytest.approx(50)


def test_msvd_lenient_vs_strict(data_root):
    m = score("msvd_qa", data_root, ["a man", "guitar", "cat"])
    assert m["lenient_acc"] == pytest.approx(200 / 3) and m["exact_acc"] == pytest.approx(100 / 3)


def test_clotho_aqa_majority(data_root):
    m = score("clotho_aqa", data_root, ["no", "birds"])  # majority "yes" / "bird" (tie -> first annotator)
    assert m["accuracy"] == 0 and m["accuracy_any"] == pytest.approx(100)
    assert score("clotho_aqa", data_root, ["Yes", "bird"])["accuracy"] == pytest.approx(100)


def test_scene_classification(data_root, tmp_path):
    assert NYU_LABELS == ["bedroom", "living_room", "others"]
    m = score("nyuv2_depth", data_root, ["It is a bedroom.", "living room", "bedroom or kitchen"])
    assert m["accuracy"] == pytest.approx(200 / 3)
    # synonyms, plurals and NYU's folded scene types, through the definitions (onellm.evaluation.scene)
    assert score("nyuv2_normal", data_root, ["Bedrooms", "livingroom", "a foyer"])["accuracy"] == pytest.approx(100)
    assert score("sunrgbd_depth", data_root, ["a hallway", "home office"])["accuracy"] == pytest.approx(100)
    assert score("sunrgbd_normal", data_root, ["corridor or library", "office"])["accuracy"] == 0
    write_scenes(tmp_path / "sun", ["library", "lab"], classes=["library", "lab", "garage"])  # classes.txt
    bench = BENCHMARKS["sunrgbd_depth"]
    records = bench.read(tmp_path / "sun")
    m = bench.score({records[0].id: "Libraries", records[1].id: "laboratory"}, records)
    assert m["accuracy"] == pytest.approx(100)
    bench = BENCHMARKS["sunrgbd_normal"]
    prompt = bench.read(data_root[0] / "sunrgbd")[0].prompt
    assert prompt.startswith("bathroom, bedroom, classroom, computer room,") and prompt.count(",") == 18
    assert prompt.endswith("What is the category of this scene? Choice one class from the class sets.")


def test_caption_scoring_exact_references(data_root):
    m = score("nsd_fmri", data_root, ["a train on the tracks", "a locomotive at a station"])
    assert m["BLEU-1"] == pytest.approx(100) and m["ROUGE-L"] == pytest.approx(100)
    m0 = score("nsd_fmri", data_root, ["purple", "purple"])
    assert m0["CIDEr"] == 0 and m0["BLEU-1"] < 1e-3


def test_caption_scoring_with_java(data_root, monkeypatch):
    monkeypatch.undo()  # the real java_available
    if not metrics.java_available():
        pytest.skip("no java")
    m = score("objaverse_caption", data_root, ["a wooden chair", "a blue bike"])
    assert {"BLEU-1", "ROUGE-L", "METEOR", "CIDEr"} <= set(m) and m["BLEU-1"] == pytest.approx(200 / 3)


def test_synth_scoring(tmp_path):
    from onellm.data.manifest import InputRef, Record

    bench = BENCHMARKS["synth"]
    attrs = {"colour": "red", "shape": "circle"}
    image = [InputRef("image", "x.png")]
    recs = [Record("c", image, prompt="p", answer="a red circle", extra={"task": "caption", "attributes": attrs}),
            Record("q1", image, prompt="p", answer="red", extra={"task": "qa", "attributes": attrs,
                                                                  "attribute": "colour"}),
            Record("q2", image, prompt="p", answer="circle", extra={"task": "qa", "attributes": attrs,
                                                                     "attribute": "shape"})]
    m = bench.score({"c": "A RED square", "q1": "Red.", "q2": "a circle or a square"}, recs)
    assert m["image/caption_acc"] == pytest.approx(50) and m["image/qa_acc"] == pytest.approx(50)
    assert m["image/chance"] == pytest.approx(100 * (1 / 4 + 1 / 3) / 2) and m["caption_acc"] == m["image/caption_acc"]


def test_benchmarks_dir_override_and_list(tmp_path, capsys, monkeypatch):
    d = tmp_path / "defs"
    d.mkdir()
    src = benchmarks_dir() / "gqa.py"
    (d / "mygqa.py").write_text(src.read_text().replace('name="gqa"', 'name="mygqa"'))
    monkeypatch.setenv("ONELLM_BENCHMARKS", str(d))
    assert run_eval("--list") == 0
    out = capsys.readouterr().out
    assert "| mygqa | image | gqa |" in out and "vqav2" not in out
    (d / "broken.py").write_text(src.read_text())  # name "gqa" in broken.py
    assert run_eval("--list") == 2
    assert "must equal the file name 'broken'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# The paper's table beside ours
# ----------------------------------------------------------------------------------------------------------------
def test_every_row_carries_the_paper_number_and_split():
    table = paper_table(BENCHMARKS, list(BENCHMARKS))
    for bench in BENCHMARKS.values():
        cells = dict(zip(COLUMNS, row_of(table, bench.name)))
        assert cells["split"] == bench.default_split and cells["ours"] == "not run"
        assert cells["metric"] == " / ".join(bench.shown_metrics)
        assert cells["released"] == bench.released and cells["released"]
        if bench.paper:
            assert cells["paper"] == " / ".join(f"{bench.paper[m]:.1f}" if m in bench.paper else "–"
                                                for m in bench.shown_metrics)
            assert bench.primary_metric in bench.paper  # the paper's number is the headline metric's
            assert bench.paper_split not in ("", "–") and cells["paper split"].startswith(bench.paper_split)
            assert bench.paper_table == "" or cells["paper split"].endswith(f"({bench.paper_table})")
        else:
            assert set(cells["paper"].split(" / ")) == {"–"}
        assert bench.splits and all(bench.splits.values()), bench.name
        assert bench.remote_splits <= set(bench.splits) and (not bench.remote_splits or bench.submit)
    assert "* the paper does not name this split" in table  # the note every "*" refers to


def test_docs_results_table_is_the_generated_one():
    """docs/evaluation.md links docs/results/paper-vs-ours.md: the results.md of `--benchmark all` before any
    run; regenerate it with `onellm eval --paper-table > docs/results/paper-vs-ours.md` when a definition changes."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    entries = yaml.safe_load((benchmarks_dir().parent / "all.yaml").read_text())["benchmarks"]
    names = [e if isinstance(e, str) else e["name"] for e in entries]
    assert (root / "docs" / "results" / "paper-vs-ours.md").read_text() == paper_table(BENCHMARKS, names)
    assert "results/paper-vs-ours.md" in (root / "docs" / "evaluation.md").read_text()


def test_paper_table_command(capsys):
    assert run_eval("--paper-table") == 0
    out = capsys.readouterr().out
    assert out == (Path(__file__).resolve().parents[1] / "docs" / "results" / "paper-vs-ours.md").read_text()
    assert run_eval("--paper-table", "--benchmark", "vqav2,gqa") == 0
    assert len(table_rows(capsys.readouterr().out)) == 2


def test_split_option(model_dir, data_root, tmp_path, capsys):
    base = ["--model", str(model_dir), "--output", str(tmp_path / "o"), *FAST]
    assert run_eval(*base, "--benchmark", "gqa", "--data", str(data_root[0]), "--split", "test") == 2
    assert "gqa has no split 'test'; its splits: testdev-balanced" in capsys.readouterr().err
    # the released script's COCO split: Karpathy val (the fixture has none) -> a clear error, nothing written
    assert run_eval(*base, "--benchmark", "coco_caption", "--data", str(data_root[0]), "--split", "val") == 2
    assert "no images in split 'val'" in capsys.readouterr().err
    assert "vqav2 | image | vqav2 | val, test-dev (server), test-std (server)" in _listing(capsys)


def _listing(capsys) -> str:
    assert run_eval("--list") == 0
    return capsys.readouterr().out


def test_vqav2_test_dev_end_to_end_says_where_to_upload(model_dir, data_root, tmp_path, capsys):
    out = tmp_path / "o"
    assert run_eval("--model", str(model_dir), "--benchmark", "vqav2", "--split", "test-dev", "--data",
                    str(data_root[0] / "vqav2"), "--output", str(out), *FAST) == 0
    printed = capsys.readouterr().out
    path = out / "vqav2-test-dev" / "vqav2_test-dev_results.json"
    payload = json.loads(path.read_text())
    assert [e["question_id"] for e in payload] == [1000, 1001, 2000] and all(e["answer"] for e in payload[:2])
    assert f"vqav2 (test-dev): wrote {path}" in printed and "EvalAI challenge 830" in printed
    assert "phase test-dev2015" in printed and "INCOMPLETE" not in printed
    assert sorted(r["id"] for r in lines(out / "vqav2-test-dev" / "predictions.jsonl")) == ["1000", "1001"]
    assert not (out / "vqav2").exists()  # the val folder is another one


# ----------------------------------------------------------------------------------------------------------------
# Default output folders, bad prediction lines
# ----------------------------------------------------------------------------------------------------------------
def test_default_output(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "stage2"
    (run / "model").mkdir(parents=True)
    (run / "recipe.json").write_text("{}")
    assert default_output(run / "model") == run / "eval"
    plain = tmp_path / "models" / "model"
    plain.mkdir(parents=True)
    other = tmp_path / "other" / "model"
    other.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    out = default_output(Path("models/model"))
    assert out.parts[:2] == ("runs", "eval") and out.name.startswith("model-") and len(out.name) == 14
    assert out == default_output(plain) != default_output(other)  # the full path decides, not the folder name


def test_second_stage_is_not_refused(model_dir, data_root, tmp_path, monkeypatch, capsys):
    """Every stage's model folder is called `model`: evaluating stage 2 after stage 1 with the default output
    used to land in the same folder and be refused ('made with other settings')."""
    monkeypatch.chdir(tmp_path)
    for stage in ("stage1", "stage2"):
        shutil.copytree(model_dir, tmp_path / "runs" / stage / "model")
        (tmp_path / "runs" / stage / "train_summary.json").write_text("{}")
        assert run_eval("--model", str(tmp_path / "runs" / stage / "model"), "--benchmark", "gqa", "--data",
                        str(data_root[0] / "gqa"), *FAST) == 0, capsys.readouterr().err
        assert (tmp_path / "runs" / stage / "eval" / "gqa" / "predictions.jsonl").is_file()
    assert not (tmp_path / "eval_results").exists()


def test_read_predictions_skips_bad_lines(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "a", "answer": "yes"}),
        "{not json",
        "null",
        "[1, 2]",
        json.dumps({"answer": "no id"}),
        json.dumps({"id": "b", "answer": 3}),
        json.dumps({"id": "b", "error": "could not load"}),
        json.dumps({"id": "c", "error": "could not load"}),
        json.dumps({"id": "c", "answer": "retried"}),
        json.dumps({"id": "d", "answer": "last"}),
        '{"id": "e", "answ',  # torn last line
    ]))
    logged = []
    answers, errors = read_predictions(path, {"a", "b", "c", "d", "e"}, log=logged.append)
    assert answers == {"a": "yes", "c": "retried", "d": "last"} and errors == {"b": "could not load"}
    assert [int(m.split(" line ")[1].split(":")[0]) for m in logged] == [2, 3, 4, 5, 6, 11]  # each once
    assert "not a JSON object (NoneType)" in logged[1] and "not a JSON object (list)" in logged[2]
    assert all(str(path) in m for m in logged)


def test_results_keep_other_splits_of_the_folder():
    """results.md of a folder shows every benchmark and split evaluated into it: a new run replaces its own rows."""
    old = [{"benchmark": "vqav2", "split": "val", "v": 1}, {"benchmark": "gqa", "split": "testdev-balanced", "v": 1}]
    new = [{"benchmark": "vqav2", "split": "test-dev", "v": 2}, {"benchmark": "gqa", "split": "testdev-balanced",
                                                                 "v": 2}]
    assert merge_rows(old, new) == [old[0], new[1], new[0]]
