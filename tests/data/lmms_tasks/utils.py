"""doc_to_* functions of the tiny OneLLM lmms-eval tasks (tests/test_lmms_eval.py, docs/lmms_eval.md).

Every document has ``path`` (a media file, relative to this folder or absolute), ``question`` and ``answer``; the
multiple-choice one has ``choices`` and ``label`` instead of ``answer``. Images come back as PIL images and audio as
HF-datasets-style ``{"array", "sampling_rate"}`` dicts, as lmms-eval's own image and audio tasks give them; videos
come back as file paths, as lmms-eval's video tasks give them.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def media_path(doc):
    path = doc["path"]
    return path if os.path.isabs(path) else os.path.join(HERE, path)


def image_doc_to_visual(doc):
    from PIL import Image

    with Image.open(media_path(doc)) as img:
        return [img.convert("RGB")]


def video_doc_to_visual(doc):
    return [media_path(doc)]


def audio_doc_to_visual(doc):
    import soundfile

    array, rate = soundfile.read(media_path(doc), dtype="float32")
    return [{"path": media_path(doc), "array": array, "sampling_rate": rate}]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"


def doc_to_choice(doc):
    return list(doc["choices"])
