"""``onellm serve``: vLLM's OpenAI-compatible server on a OneLLM model directory (vLLM 0.32.0).

What vLLM's server needs beyond the offline engine (:mod:`onellm.vllm.engine`):

* **A tokenizer folder with a chat template** (:func:`serving_tokenizer_directory`). The server renders OpenAI
  ``messages`` with a Jinja chat template (content format ``openai``: media parts arrive as ``{"type": "image"}``,
  ``{"type": "audio"}``, ``{"type": "video"}``) and tokenizes the rendered string. Ours (:func:`chat_template`)
  renders what ``OneLLMProcessor.apply_chat_template`` renders -- BOS, one marker per media part in message order,
  then OneLLM's conversation template (``config.legacy_prompt`` honoured) -- and the folder's tokenizer knows each
  marker (``<image>``, ``<audio>``, ``<video>``) as a special token whose id *is* the modality's placeholder id
  (``llm.vocab_size + index``), so the multimodal processor expands every marker into its K + 2 block, in place:
  the prompt is the HF path's ``input_ids``. The Metaspace pre-tokenizer's ``prepend_scheme`` "first" becomes
  "always" (text right after a special token gets SentencePiece's "▁" prefix, as the HF path's segment-wise
  encoding gives it). :func:`check_chat_prompt` proves the equality on sample conversations before the server
  starts.
* **Media**: vLLM fetches ``image_url`` / ``audio_url`` / ``input_audio`` / ``video_url`` (``data:`` URLs, or
  http(s) / local files where allowed) into PIL images, ``(samples, rate)`` and ``(frames, metadata)``; the
  multimodal processor (:func:`onellm.vllm.processor.load_media_item`) preprocesses them as the file loaders do.
* **Sampling defaults**: the released ones (temperature 0.1, top-p 0.75, 128 new tokens) through
  ``--override-generation-config``; a request without ``stop`` stops at the template separator "###" (set by the
  plugin in every server process when ``ONELLM_SERVE_DEFAULT_STOP`` is set, :func:`patch_default_stop`). A request's
  own values win: ``"temperature": 0`` is greedy.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

CHAT_MODALITIES = ("image", "audio", "video")  # the media kinds of OpenAI chat parts vLLM 0.32 parses
TEMPLATE_FILE = "chat_template.jinja"


def _literal(text: str) -> str:
    """A Jinja string literal of ``text``."""
    return json.dumps(text)


def chat_template(config) -> str:
    """The Jinja chat template of a OneLLM config (see the module docstring)."""
    from onellm.data.template import SEPARATOR, SYSTEM
    from onellm.modalities import get as modality_definition

    from .encoder import model_modalities

    markers = {m: modality_definition(m).marker for m in CHAT_MODALITIES if m in model_modalities(config)}
    if getattr(config, "legacy_prompt", False):
        first, later = f"{SYSTEM}\n\n{SEPARATOR}Human: ", "Human: "
        assistant, answer_sep = f"\n{SEPARATOR}Assistant:", ""
    else:
        first, later = f"{SYSTEM}\n\n{SEPARATOR} Human: ", " Human: "
        assistant, answer_sep = f"\n{SEPARATOR} Assistant:", ""
    end = f"\n{SEPARATOR}"
    lines = [
        "{#- OneLLM: BOS, one marker per media part (in message order), the conversation template -#}",
        "{%- set markers = " + json.dumps(markers) + " -%}",
        "{%- set ns = namespace(head='', body='', turns=0, open=false, text='', n=0) -%}",
        "{%- for message in messages -%}",
        "{%- if message['content'] is string -%}{%- set parts = [{'type': 'text', 'text': message['content']}] -%}",
        "{%- elif message['content'] is none -%}{%- set parts = [] -%}",
        "{%- else -%}{%- set parts = message['content'] -%}{%- endif -%}",
        "{%- set ns.text = '' -%}{%- set ns.n = 0 -%}",
        "{%- for part in parts -%}",
        "{%- if part['type'] == 'text' -%}",
        "{%- set ns.text = ns.text ~ (' ' if ns.n else '') ~ (part['text'] or '') -%}{%- set ns.n = ns.n + 1 -%}",
        "{%- elif part['type'] in markers -%}{%- set ns.head = ns.head ~ markers[part['type']] -%}",
        "{%- else -%}{{ raise_exception('OneLLM chat: unsupported content part ' ~ part['type']) }}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- set text = ns.text | trim -%}",
        "{%- if message['role'] == 'user' -%}",
        "{%- if ns.open -%}{{ raise_exception('OneLLM chat: two user messages in a row') }}{%- endif -%}",
        "{%- if ns.turns == 0 -%}{%- set ns.body = " + _literal(first) + " ~ text ~ " + _literal(assistant) + " -%}",
        "{%- else -%}{%- set ns.body = ns.body ~ " + _literal(later) + " ~ text ~ " + _literal(assistant)
        + " -%}{%- endif -%}",
        "{%- set ns.turns = ns.turns + 1 -%}{%- set ns.open = true -%}",
        "{%- elif message['role'] == 'assistant' -%}",
        "{%- if not ns.open -%}{{ raise_exception('OneLLM chat: an assistant message must follow a user message') }}"
        "{%- endif -%}",
        "{%- set ns.body = ns.body ~ ' ' ~ text ~ " + _literal(end + answer_sep) + " -%}{%- set ns.open = false -%}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- if ns.turns == 0 -%}{{ raise_exception('OneLLM chat: the conversation has no user message') }}"
        "{%- endif -%}",
        "{{- bos_token ~ ns.head ~ ns.body -}}",
    ]
    return "\n".join(lines) + "\n"


def _set_prepend_always(node: Any) -> bool:
    """Metaspace pre-tokenizers (also inside a Sequence) with prepend_scheme "first" -> "always"."""
    changed = False
    if isinstance(node, dict):
        if node.get("type") == "Metaspace" and node.get("prepend_scheme") == "first":
            node["prepend_scheme"] = "always"
            changed = True
        for value in node.values():
            changed |= _set_prepend_always(value)
    elif isinstance(node, list):
        for value in node:
            changed |= _set_prepend_always(value)
    return changed


def serving_tokenizer_directory(model_dir: str | Path, config=None) -> Path:
    """The tokenizer folder ``onellm serve`` hands vLLM (a temporary folder, removed at exit): the model's
    tokenizer with the chat markers as special tokens on the placeholder ids, the chat template, the LLaMA
    ``config.json`` of the decoder. Raises ``ValueError`` when the tokenizer cannot be given those ids."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    from onellm.checkpoint import read_config
    from onellm.modalities import get as modality_definition

    from .encoder import model_modalities, placeholder_ids
    from .engine import tokenizer_directory
    from .hf_config import vllm_config_from_onellm

    model_dir = Path(model_dir)
    config = config or read_config(model_dir)
    folder = tokenizer_directory(model_dir, vllm_config_from_onellm(config).text_config)
    tok = AutoTokenizer.from_pretrained(str(folder))
    vocab, ids = int(config.llm.vocab_size), placeholder_ids(config)
    if len(tok) > vocab:
        raise ValueError(f"the tokenizer has {len(tok)} tokens, more than the model's vocabulary ({vocab}): the "
                         "chat markers cannot take the placeholder ids")
    fill = [AddedToken(f"<onellm_unused_{i}>", special=True, normalized=False) for i in range(len(tok), vocab)]
    names = model_modalities(config)
    markers = [AddedToken(modality_definition(m).marker if m in CHAT_MODALITIES else f"<onellm_placeholder_{m}>",
                          special=True, normalized=False) for m in names]
    tok.add_tokens(fill + markers, special_tokens=True)
    tok.chat_template = chat_template(config)
    tok.save_pretrained(str(folder))
    tj, tc = folder / "tokenizer.json", folder / "tokenizer_config.json"
    if tj.is_file():
        data = json.loads(tj.read_text(encoding="utf-8"))
        if _set_prepend_always(data.get("pre_tokenizer")):
            tj.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    if tc.is_file():  # transformers' LlamaTokenizer rebuilds its pre-tokenizer: legacy=True is its "always"
        data = json.loads(tc.read_text(encoding="utf-8"))
        if data.get("tokenizer_class") in ("LlamaTokenizer", "LlamaTokenizerFast"):
            data["legacy"] = True
            tc.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    (folder / TEMPLATE_FILE).write_text(chat_template(config), encoding="utf-8")
    tok = AutoTokenizer.from_pretrained(str(folder))
    wrong = {m: tok.convert_tokens_to_ids(modality_definition(m).marker) for m in names
             if m in CHAT_MODALITIES and tok.convert_tokens_to_ids(modality_definition(m).marker) != ids[m]}
    if wrong:
        raise ValueError(f"chat markers got ids {wrong}, not the placeholder ids {ids}")
    return folder


def sample_conversations(config) -> list[tuple[list[dict], str, list[tuple[str, str]], list[str]]]:
    """(OpenAI messages in the ``openai`` content format, question, history, media modalities in order)."""
    from .encoder import model_modalities

    media = [m for m in CHAT_MODALITIES if m in model_modalities(config)]
    parts = [{"type": m} for m in media]
    q1, a1, q2 = "What is in the picture? Describe it.", "A red circle, near.\nIt moves.", "  And the sound?"
    out = [([{"role": "user", "content": [*parts, {"type": "text", "text": q1}]}], q1, [], media),
           ([{"role": "user", "content": "Hello there."}], "Hello there.", [], []),
           ([{"role": "system", "content": "ignored"},
             {"role": "user", "content": [{"type": "text", "text": q1}, *parts[:1]]},
             {"role": "assistant", "content": a1},
             {"role": "user", "content": [{"type": "text", "text": q2}, *parts[1:]]}], q2.strip(), [(q1, a1)],
            media)]
    if len(media) >= 2:  # markers keep the message order, across modalities
        mixed = [media[1], media[0], media[1]]
        out.append(([{"role": "user", "content": [{"type": m} for m in mixed] + [{"type": "text", "text": q1}]}],
                    q1, [], mixed))
    return out


def check_chat_prompt(tokenizer_dir: str | Path, model_dir: str | Path) -> int:
    """Render + tokenize sample conversations as vLLM's server does (chat template, ``add_special_tokens=False``)
    and compare with the HF path's ids: ``[bos]``, one placeholder id per media item, the conversation's text ids
    (``OneLLMProcessor.prompt_ids``). Returns the number of conversations checked; raises ``ValueError`` on the
    first difference."""
    from transformers import AutoTokenizer

    from onellm.processing import processor_for_directory

    from .encoder import placeholder_ids

    processor = processor_for_directory(model_dir)
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    template = Path(tokenizer_dir, TEMPLATE_FILE).read_text(encoding="utf-8")
    pid = placeholder_ids(processor.config)
    checked = 0
    for messages, question, history, media in sample_conversations(processor.config):
        text = tok.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
        got = list(tok(text, add_special_tokens=False)["input_ids"])
        ids = processor.prompt_ids(question, history)
        want = ids[:1] + [pid[m] for m in media] + ids[1:]
        if got != want:
            raise ValueError(f"the chat template's prompt differs from the HF path's for {messages!r}:\n"
                             f"  rendered {text!r}\n  ids  {got}\n  want {want}")
        checked += 1
    return checked


def vllm_serve_argv(model_dir: str | Path, tokenizer_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
                    dtype: str = "auto", max_num_seqs: int = 64, tensor_parallel_size: int = 1,
                    max_new_tokens: int = 128, temperature: float = 0.1, top_p: float = 0.75,
                    served_model_name: str | None = None, seed: int = 0, extra: Sequence[str] = ()) -> list[str]:
    """The ``vllm serve`` arguments for a OneLLM model directory."""
    from onellm.checkpoint import read_config

    from .engine import resolve_dtype

    config = read_config(Path(model_dir))
    max_len = min(config.llm.max_position_embeddings, config.max_seq_len + max(256, max_new_tokens))
    overrides = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}
    return ["serve", str(model_dir), "--config-format", "onellm", "--tokenizer", str(tokenizer_dir),
            "--chat-template", str(Path(tokenizer_dir) / TEMPLATE_FILE), "--chat-template-content-format", "openai",
            "--dtype", resolve_dtype(dtype), "--max-model-len", str(max_len), "--max-num-seqs", str(max_num_seqs),
            "--tensor-parallel-size", str(tensor_parallel_size), "--seed", str(seed),
            "--override-generation-config", json.dumps(overrides),
            "--served-model-name", served_model_name or Path(model_dir).resolve().name,
            "--host", host, "--port", str(port), *extra]


def serve(model_dir: str | Path, *, kv_cache_gib: float | None = None, extra: Sequence[str] = (),
          **options: Any) -> int:
    """Register the plugin, build the tokenizer folder, check the chat prompt, then run ``vllm serve`` in this
    process (the API server here, the engine core in its own process). Returns vLLM's exit code."""
    from .engine import DEFAULT_KV_CACHE_GIB, check_head_size
    from .plugin import DEFAULT_STOP_ENV, ensure_entry_point_for_subprocesses, register
    from onellm.checkpoint import read_config

    model_dir = Path(model_dir)
    config = read_config(model_dir)
    os.environ[DEFAULT_STOP_ENV] = "1"  # every server process (plugin.register) stops at "###" by default
    register()
    ensure_entry_point_for_subprocesses()
    check_head_size(config)
    if kv_cache_gib is not None:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, int(round(float(kv_cache_gib)))))
    else:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(DEFAULT_KV_CACHE_GIB))
    folder = serving_tokenizer_directory(model_dir, config)
    n = check_chat_prompt(folder, model_dir)
    print(f"onellm serve: chat template checked on {n} conversations (prompts = the HF path's input_ids)",
          file=sys.stderr, flush=True)
    argv = vllm_serve_argv(model_dir, folder, extra=extra, **options)
    run_vllm_serve(argv)
    return 0


def run_vllm_serve(argv: Sequence[str]) -> None:
    """``vllm serve ARGV...`` in this process. Not through ``vllm.entrypoints.cli.main``: that reads the version of
    a distribution called ``vllm``, and the CPU build is installed as ``vllm-cpu``; the serve sub-command is the
    same code."""
    from vllm.entrypoints.cli.serve import cmd_init
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
    from vllm.logger import configure_logging_from_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    cli_env_setup()
    parser = FlexibleArgumentParser(prog="onellm serve (vllm serve)")
    sub = parser.add_subparsers(required=True, dest="subparser")
    (command,) = cmd_init()
    command.subparser_init(sub).set_defaults(dispatch_function=command.cmd)
    args = parser.parse_args(list(argv))
    configure_logging_from_args(args)
    command.validate(args)
    args.dispatch_function(args)
