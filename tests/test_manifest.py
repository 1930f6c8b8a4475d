"""The JSONL manifest: parsing, path resolution, validation with line numbers."""
import json

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
