"""The JSONL manifest: parsing, path resolution, validation with line numbers."""
import json

import numpy as np

import pytest

from onellm.data.manifest import ManifestError, read_manifest, write_jsonl


def write(tmp_path, lines):
    p = tmp_path / "m.jsonl"
    p.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    return p


def test_reads_records_and_resolves_paths(tmp_path):
    p = write(tmp_path, [
        {"id": "a", "inputs": [{"modality": "image", "path": "img/a.png"}], "caption": "a red circle"},
        {"id": 7, "inputs": [{"modality": "rgbd", "path": "d.png", "rgb": "r.png"},
                             {"modality": "imu", "path": "/abs/x.npy", "timestamps": "t.npy", "start": 1, "end": 3}],
         "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "attributes": {"k": 1}},
        "",
        {"id": "t", "prompt": "hello"},
    ])
    recs = read_manifest(p)
    assert [r.id for r in recs] == ["a", "7", "t"]
    assert recs[0].inputs[0].path == str(tmp_path / "img/a.png")
    depth, imu = recs[1].inputs
    assert depth.modality == "depth" and depth.options["rgb"] == str(tmp_path / "r.png")
    assert imu.path == "/abs/x.npy" and imu.options["timestamps"] == str(tmp_path / "t.npy") and imu.options["end"] == 3
    assert recs[1].extra == {"attributes": {"k": 1}}
    assert recs[1].modality_key == "depth+imu" and recs[2].modality_key == "text"
    assert recs[1].line == 2 and recs[2].line == 4


def test_every_bad_line_is_reported_with_its_number(tmp_path):
    p = write(tmp_path, [
        {"id": "ok", "inputs": [{"modality": "audio", "path": "a.wav"}], "caption": "x"},
        "{not json",
        {"inputs": []},
        {"id": "m", "inputs": [{"modality": "smell", "path": "x"}]},
        {"id": "d", "inputs": [{"modality": "depth", "path": "d.png"}]},
        {"id": "c", "conversations": [{"from": "gpt", "value": "a"}]},
        {"id": "ok", "caption": "dup"},
        {"id": "o", "inputs": [{"modality": "image", "path": "a.png", "rgb": "b.png"}]},
        {"id": "e", "caption": ""},
    ])
    with pytest.raises(ManifestError) as err:
        read_manifest(p)
    lines = [n for n, _ in err.value.problems]
    assert lines == [2, 3, 4, 5, 6, 7, 8, 9]
    text = str(err.value)
    assert "line 2: invalid JSON" in text and "unknown modality 'smell'" in text
    assert "paired RGB" in text and "duplicate id 'ok'" in text and "unknown option" in text


def test_require_field(tmp_path):
    p = write(tmp_path, [{"id": "a", "prompt": "x"}])
    with pytest.raises(ManifestError, match="missing 'caption'"):
        read_manifest(p, require="caption")
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "nope.jsonl")


def test_write_jsonl_is_atomic_and_roundtrips(tmp_path):
    rows = [{"id": str(i), "prompt": f"q{i}"} for i in range(3)]
    write_jsonl(tmp_path / "o.jsonl", rows)
    assert [r.prompt for r in read_manifest(tmp_path / "o.jsonl")] == ["q0", "q1", "q2"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_utf8_bom_is_accepted_and_other_bytes_are_reported(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"id": "a", "prompt": "caf\xc3\xa9"}\n{"id": "b", "prompt": "\xe9"}\n')
    with pytest.raises(ManifestError) as err:
        read_manifest(p)
    assert err.value.problems == [(2, "not UTF-8 text: byte 0xe9 at column 24 (re-encode the file as UTF-8)")]
    p.write_bytes(b'\xef\xbb\xbf{"id": "a", "prompt": "caf\xc3\xa9"}\n')
    assert read_manifest(p)[0].prompt == "caf\u00e9"


# -- the bounded-memory index ------------------------------------------------------------------------------------
def test_manifest_index_equals_read_manifest_and_reports_the_same_problems(tmp_path):
    from onellm.data.manifest import ManifestIndex

    lines = [{"id": f"r{i}", "inputs": [{"modality": ["image", "audio", "depth"][i % 3],
                                         "path": f"x{i}.png" if i % 3 != 1 else f"x{i}.wav",
                                         **({"rgb": "r.png"} if i % 3 == 2 else {})}],
              "caption": ["a", "bb"] if i % 2 else "ccc", "type": "t" if i == 4 else None} for i in range(30)]
    p = write(tmp_path, lines[:10] + [""] + lines[10:])
    index = ManifestIndex.build(p, require="caption")
    assert list(index) == read_manifest(p, require="caption") and len(index) == 30
    assert index[-1] == read_manifest(p)[-1] and index[3:5] == read_manifest(p)[3:5]
    assert index.modality_keys()[:3] == ["image", "audio", "depth"] and index.data_types()[4] == "t"
    audio = index.select(np.array(index.modality_keys()) == "audio")
    assert [r.id for r in audio] == [f"r{i}" for i in range(1, 30, 3)]
    bad = [{"id": "a", "caption": "x"}, "{nope", {"id": "b"}, {"id": "a", "caption": "y"}, {"id": "b", "caption": "z"},
           {"id": "b", "caption": "w"}, {"id": "c"}, {"id": "c"}]
    p = write(tmp_path, bad)
    with pytest.raises(ManifestError) as expected:
        read_manifest(p, require="caption")
    with pytest.raises(ManifestError) as got:
        ManifestIndex.build(p, require="caption")
    assert got.value.problems == expected.value.problems
    assert "duplicate id 'a' (first on line 1)" in str(got.value)


def test_manifest_index_is_cached_memory_mapped_and_small(tmp_path, monkeypatch):
    import pickle
    import tracemalloc

    from onellm.data.manifest import ManifestIndex

    def manifest(n):
        p = tmp_path / f"big-{n}.jsonl"
        with p.open("w") as f:
            for i in range(n):
                f.write(json.dumps({"id": f"laion-{i:09d}", "inputs": [{"modality": "image", "path": f"img/{i}.jpg"}],
                                    "caption": f"a photo of thing number {i} on a table"}) + "\n")
        return p

    def peak_bytes(p):
        tracemalloc.start()
        index = ManifestIndex.build(p, require="caption")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return index, peak

    n = 16_000
    _, small = peak_bytes(manifest(n // 2))  # the difference of two sizes: per line, without fixed costs
    p = manifest(n)
    index, large = peak_bytes(p)
    assert (large - small) / (n // 2) < 80  # bytes a line at the peak (a list of Records: ~1,500)
    assert index[n - 1].id == f"laion-{n - 1:09d}" and index[n - 1].inputs[0].path == str(tmp_path / f"img/{n - 1}.jpg")
    cached = ManifestIndex.open(p, require="caption", cache_dir=tmp_path / "cache")
    assert isinstance(cached.arrays["offsets"], np.memmap) and cached[123] == index[123]
    again = ManifestIndex.open(p, require="caption", cache_dir=tmp_path / "cache")  # read back, not rebuilt
    assert isinstance(again.arrays["offsets"], np.memmap) and len(again) == n
    clone = pickle.loads(pickle.dumps(again.select(np.arange(n) % 2 == 0)))  # what a spawned worker gets
    assert clone[1].id == "laion-000000002"
    p.write_text(p.read_text() + json.dumps({"id": "late", "caption": "x"}) + "\n")  # a changed file: rebuilt
    assert len(ManifestIndex.open(p, require="caption", cache_dir=tmp_path / "cache")) == n + 1
