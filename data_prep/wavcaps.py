#!/usr/bin/env python3
"""WavCaps -> audio alignment manifest.

Inputs:
  --json FILE [FILE ...]  the released json files (github.com/XinhaoMei/WavCaps data/json_files, also on HF
      cvssp/WavCaps json_files/): AudioSet_SL/as_final.json, BBC_Sound_Effects/bbc_final.json,
      FreeSound/fsd_final.json, SoundBible/sb_final.json. Each is {"num_captions_per_audio": 1, "data": [...]}.
      Entries share `id`, `caption`, `duration` and `audio`; the sources differ in the rest (FreeSound: file_name,
      href, tags, description, author, download_link; BBC: description, category, download_link; SoundBible:
      title, description, author, href, download_link; AudioSet_SL: nothing more, and its `id` keeps the ".wav"
      of the original clip, e.g. "Yb0RFKhbpFJA.wav"). `audio` is the placeholder "wav_path" in the release.
      Files with num_captions_per_audio > 1 (WavCaps' Clotho/AudioCaps jsons) give caption_1..caption_N.
  --audio-root DIR        the extracted audio (HF cvssp/WavCaps Zip_files/<source>/*.zip: FLAC files named
      <id without extension>.flac). A json's audio folder is DIR/<source> or DIR/<source>_flac when it exists, else
      DIR; <source> = the json's folder name (AudioSet_SL, BBC_Sound_Effects, FreeSound, SoundBible), or the source
      its file name implies (as_final -> AudioSet_SL ...). The file of an entry is its `audio`/`wav_path`/
      `file_path` when that names an existing file (absolute or relative to the audio folder), else the
      audio-folder file (searched recursively) whose name without extension is the id without extension
      (.flac preferred over .wav, .mp3, .ogg).
  --blacklist FILE        WavCaps' blacklist_exclude_*.json ({"AudioSet": [ids], "FreeSound": [ids]}): entries
      of a source whose name contains the key are skipped (clips overlapping AudioCaps/Clotho test sets).

Example:
  python data_prep/wavcaps.py --json WavCaps/json_files/*/*_final.json --audio-root WavCaps/audio \\
      --blacklist WavCaps/json_files/blacklist/blacklist_exclude_test_ac.json --out WavCaps/wavcaps.jsonl
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))  # data_prep/ is not a package: common.py lies beside
import common  # noqa: E402

AUDIO_EXTS = (".flac", ".wav", ".mp3", ".ogg", ".m4a")
SOURCES = {"as_final": "AudioSet_SL", "bbc_final": "BBC_Sound_Effects", "fsd_final": "FreeSound",
           "sb_final": "SoundBible"}
PATH_KEYS = ("audio", "wav_path", "file_path", "path")


def stem_of(name: str) -> str:
    base, ext = os.path.splitext(name)
    return base if ext.lower() in AUDIO_EXTS else name


def source_of(json_path: Path) -> str:
    for prefix, source in SOURCES.items():
        if json_path.stem.startswith(prefix):
            return source
    return json_path.parent.name or json_path.stem


@lru_cache(maxsize=None)  # several jsons may share one folder: walk it once
def audio_index(folder: Path) -> dict[str, Path]:
    """{file name without extension: path} of every audio file under ``folder``, by extension preference."""
    found: dict[str, Path] = {}
    rank = {ext: k for k, ext in enumerate(AUDIO_EXTS)}
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            base, ext = os.path.splitext(name)
            ext = ext.lower()
            if ext in rank and (base not in found or rank[ext] < rank[found[base].suffix.lower()]):
                found[base] = Path(dirpath) / name
    return found


def blacklist(paths: list[Path]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in paths:
        for key, ids in common.read_json(path).items():
            out.setdefault(key.lower(), set()).update(stem_of(str(i)) for i in ids)
    return out


def captions(entry: dict[str, Any], per_audio: int) -> list[str] | str:
    if per_audio > 1:
        return common.captions_or_reason(entry.get(f"caption_{k}") for k in range(1, per_audio + 1))
    return common.captions_or_reason([entry.get("caption")])


def items(args) -> Iterator[common.Item]:
    banned = blacklist(args.blacklist or [])
    for json_path in args.json:
        source = source_of(json_path)
        folder = next((d for d in (args.audio_root / source, args.audio_root / f"{source}_flac") if d.is_dir()),
                      args.audio_root)
        index = audio_index(folder)
        excluded = set().union(*[ids for key, ids in banned.items() if key in source.lower()])
        data = common.read_json(json_path)
        per_audio = int(data.get("num_captions_per_audio", 1))
        for entry in data["data"]:
            if not isinstance(entry, dict) or "id" not in entry:
                yield "bad entry"
                continue
            stem = stem_of(str(entry["id"]))
            caps = captions(entry, per_audio)
            if stem in excluded:
                yield "blacklisted"
                continue
            if isinstance(caps, str):
                yield caps
                continue
            if args.max_duration and float(entry.get("duration") or 0) > args.max_duration:
                yield "longer than --max-duration"
                continue
            named = (folder / str(entry[k]) for k in PATH_KEYS if isinstance(entry.get(k), str) and entry[k])
            audio = next((p for p in named if p.is_file()), None) or index.get(stem)
            if audio is None:
                yield "missing audio"
            else:
                yield common.caption_row(f"wavcaps-{source}-{stem}", "audio", audio,
                                         caps[0] if len(caps) == 1 else caps)


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--json", type=Path, nargs="+", required=True, help="WavCaps json file(s)")
    p.add_argument("--audio-root", type=Path, required=True, help="folder of the extracted audio")
    p.add_argument("--blacklist", type=Path, action="append", help="blacklist_exclude_*.json; repeatable")
    p.add_argument("--max-duration", type=float, default=None,
                   help="skip clips longer than this many seconds (the model reads the first 10.24 s)")
    args = p.parse_args(argv)
    return common.finish(args, items(args))


if __name__ == "__main__":
    sys.exit(main())
