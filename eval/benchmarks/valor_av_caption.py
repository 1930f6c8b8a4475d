"""VALOR-32K test audio-visual captioning: one request with two inputs, video then audio (spec §5: "{video
tokens}{audio tokens}{text}"): CIDEr."""
from pathlib import Path

from onellm.evaluation.benchmark import Benchmark, caption_scorer, load_json, request

PROMPT = "Provide a one-sentence caption for the provided video and audio."  # Tab. 11 caption prompt, adapted


def read(root: Path) -> list:
    refs: dict[str, list[str]] = {}
    for item in load_json(root / "desc_test.json", "VALOR-32K test descriptions"):
        refs.setdefault(str(item["video_id"]), []).append(item["desc"].strip())
    return [request(vid, [{"modality": "video", "path": f"videos/{vid}.mp4"},
                          {"modality": "audio", "path": f"audios/{vid}.wav"}], PROMPT, "caption", root,
                    references=captions) for vid, captions in refs.items()]


BENCHMARK = Benchmark(
    name="valor_av_caption", modality="video+audio", description="VALOR-32K test audio-visual captioning",
    data_dir="valor32k", doc_anchor="valor-av-caption", prompt=PROMPT, read=read, score=caption_scorer(),
    primary_metric="CIDEr", paper={"CIDEr": 29.2},
    paper_split="test*", paper_table="Tab. 4", splits={"test": "VALOR-32K test, 3500 clips"})
