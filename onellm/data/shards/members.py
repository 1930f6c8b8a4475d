"""Which members of a shard sample are its inputs, their options and its caption: the naming rule, read from the
modality registry (extensions, options, path options of each modality's loader), never from a table here.

For a sample of modality key ``m1+m2+...`` (one entry's ``modality``), input ``k`` of modality ``m`` (its
``j``-th input of that modality; ``tag`` = ``m`` for j = 0, ``m<j>`` after) is

* the member ``<key>.<tag>.<ext>`` with ``.<ext>`` one of the loader's extensions (``000017.depth.png``), or, for a
  sample of one input whose loader needs no option, the bare ``<key>.<ext>`` (img2dataset's ``000017.jpg``,
  video2dataset's ``.mp4``, ``.wav``, ``.npy``);
* path options (``rgb`` of depth/normal, ``timestamps`` of imu): the member ``<key>.<option>.<ext>`` (``<option><j>``
  for later inputs of the modality): ``000017.rgb.jpg``, ``000017.timestamps.npy``;
* other options (imu ``start``/``end``/``rate``, video ``backend``): the ``<key>.json`` metadata, under
  ``"inputs": [{...}, ...]`` (one object per input), or, for a one-input sample, its top-level keys that are
  options of that loader (so img2dataset's url/width/status keys are ignored).

The caption (``caption_key``): ``auto`` takes the json's ``caption`` (a string or a list) when it has one, else the
``.txt`` member; ``txt`` (or any extension) takes that member's text; ``json.<field>`` a json field
(LAION-COCO's ``json.top_caption``). The sample id is the json's ``id`` when present, else ``<shard>/<key>``.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

from ...modalities import get as modality_definition
from ...modalities import resolve


class Member(io.BytesIO):
    """A member's bytes as a binary file object (what PIL, numpy, soundfile, PyAV, decord and trimesh read),
    named ``<shard>:<key>.<ext>`` so that loader errors name the shard and the key."""

    def __init__(self, data: bytes, name: str, ext: str):
        super().__init__(data)
        self.name = name
        self.ext = ext  # the member extension ("depth.png")
        self.suffix = "." + ext.rsplit(".", 1)[-1]  # the file extension (".png")
        self.nbytes = len(data)

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__


@dataclass
class ShardInput:
    modality: str
    member: Member
    options: dict[str, Any] = field(default_factory=dict)  # path options are Members


@dataclass
class ShardSample:
    id: str
    inputs: list[ShardInput]
    caption: str | list[str] | None
    meta: dict[str, Any]


def parse_key(modality_key: str) -> list[str]:
    """``"video+audio"`` -> ``["video", "audio"]`` (canonical names; aliases resolve)."""
    names = [resolve(m) for m in str(modality_key).split("+") if m.strip()]
    if not names:
        raise ValueError(f"no modality in {modality_key!r}")
    return names


def canonical_key(modality_key: str) -> str:
    return "+".join(parse_key(modality_key))


def _tag(name: str, j: int) -> str:
    return name if j == 0 else f"{name}{j}"


def member_plan(modality_key: str) -> list[dict[str, Any]]:
    """Per input: its modality, the member names it may have and those of its path options (for writers and
    error messages)."""
    modalities = parse_key(modality_key)
    plan, seen = [], {}
    for m in modalities:
        j = seen.get(m, 0)
        seen[m] = j + 1
        spec = modality_definition(m).loader
        bare = len(modalities) == 1 and not spec.required
        plan.append({"modality": m, "tag": _tag(m, j), "bare": bare, "extensions": spec.extensions,
                     "path_options": {o: _tag(o, j) for o in spec.path_options}})
    return plan


def _find(members: dict[str, bytes], tag: str | None, extensions: tuple[str, ...]) -> list[str]:
    if tag is None:
        return [e for e in members if "." + e in extensions]
    return [e for e in members if e.startswith(tag + ".") and "." + e[len(tag) + 1:] in extensions]


def _meta(members: dict[str, bytes], where: str) -> dict[str, Any]:
    if "json" not in members:
        return {}
    try:
        meta = json.loads(members["json"].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{where}.json: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{where}.json: expected a JSON object, got {type(meta).__name__}")
    return meta


def _caption(members: dict[str, bytes], meta: dict[str, Any], caption_key: str, where: str):
    if caption_key == "auto":
        caption_key = "json.caption" if "caption" in meta else "txt"
    if caption_key.startswith("json."):
        value = meta.get(caption_key[5:])
        if value is None:
            raise ValueError(f"{where}: no {caption_key[5:]!r} in its json (caption_key {caption_key})")
    else:
        if caption_key not in members:
            raise ValueError(f"{where}: no .{caption_key} caption member")
        value = members[caption_key].decode("utf-8", "replace")
    if isinstance(value, list):
        value = [" ".join(c.split()) for c in value if isinstance(c, str) and c.strip()]
        if not value:
            raise ValueError(f"{where}: empty caption list")
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: empty caption")
    return " ".join(value.split())


def assemble(shard: str, key: str, members: dict[str, bytes], modality_key: str,
             caption_key: str | None = "auto", default_id: str | None = None) -> ShardSample:
    """The inputs, options and caption of one sample (``caption_key=None``: no caption needed). Raises
    ValueError naming the shard and the key."""
    where = f"{shard}:{key}"
    meta = _meta(members, where)
    plan = member_plan(modality_key)
    listed = meta.get("inputs")
    if listed is not None and (not isinstance(listed, list) or len(listed) != len(plan)
                               or not all(isinstance(o, dict) for o in listed)):
        raise ValueError(f"{where}.json: 'inputs' must be a list of {len(plan)} option object(s)")
    inputs = []
    for k, slot in enumerate(plan):
        m, spec = slot["modality"], modality_definition(slot["modality"]).loader
        found = _find(members, slot["tag"], spec.extensions) or (
            _find(members, None, spec.extensions) if slot["bare"] else [])
        if not found:
            names = f"{slot['tag']}.<ext>" + (" or <ext>" if slot["bare"] else "")
            raise ValueError(f"{where}: no {m} member ({names}, ext one of {', '.join(spec.extensions)}; "
                             f"members: {', '.join(sorted(members)) or 'none'})")
        if len(found) > 1:
            raise ValueError(f"{where}: {len(found)} {m} members ({', '.join(sorted(found))}); expected one")
        ext = found[0]
        value_options = {o for o in spec.options if o not in spec.path_options}
        if listed is not None:
            options = dict(listed[k])
            unknown = set(options) - value_options
            if unknown:
                raise ValueError(f"{where}.json: inputs[{k}] ({m}) has unknown option(s) {sorted(unknown)}; allowed: "
                                 f"{sorted(value_options) or 'none'} (path options are members)")
        else:
            options = {o: meta[o] for o in value_options if o in meta} if len(plan) == 1 else {}
        for o in spec.number_options:
            if o in options and (isinstance(options[o], bool) or not isinstance(options[o], (int, float))):
                raise ValueError(f"{where}.json: option {o!r} of the {m} input must be a number")
        for option, tag in slot["path_options"].items():
            hits = [e for e in members if e.startswith(tag + ".")]
            if len(hits) > 1:
                raise ValueError(f"{where}: {len(hits)} {option} members ({', '.join(sorted(hits))}); expected one")
            if hits:
                options[option] = Member(members[hits[0]], f"{where}.{hits[0]}", hits[0])
        missing = [o for o in spec.required if o not in options]
        if missing:
            what = "; ".join(spec.option_help.get(o, o) for o in missing)
            raise ValueError(f"{where}: the {m} input needs member(s) "
                             f"{', '.join(slot['path_options'].get(o, o) + '.<ext>' for o in missing)} ({what})")
        inputs.append(ShardInput(m, Member(members[ext], f"{where}.{ext}", ext), options))
    caption = _caption(members, meta, caption_key, where) if caption_key is not None else None
    rid = meta.get("id")
    rid = str(rid) if isinstance(rid, (str, int)) and str(rid) else (default_id or f"{shard}/{key}")
    return ShardSample(rid, inputs, caption, meta)
