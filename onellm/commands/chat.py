"""``onellm chat``: interactive terminal chat about one or more inputs, with streaming and multi-turn history.

Type a question and press Enter. ``/help`` lists the commands: ``/<modality> PATH [option=value ...]`` adds or
replaces an input, ``/inputs`` shows them, ``/reset`` clears the history, ``/quit`` (or Ctrl-D) leaves. Ctrl-C
while an answer streams stops it and keeps the session (the partial answer stays in the history).
"""
from __future__ import annotations

import argparse
import shlex
import sys

from .infer import add_generation_arguments
from .inputs import add_input_arguments, inputs_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory")
    add_input_arguments(p)
    add_generation_arguments(p)


def _check_paths(inputs) -> None:
    """Fail before the model loads (seconds, minutes at 7B) when an input file is missing or of the wrong kind."""
    from pathlib import Path

    from ..data.errors import InputError
    from ..modalities import get

    for modality, path, options in inputs:
        spec = get(modality).loader
        for key in ("path", *spec.path_options):
            value = path if key == "path" else options.get(key)
            if value is None:
                continue
            if key == "path" and Path(value).suffix.lower() not in spec.extensions:
                raise InputError(value, f"unsupported file extension for {modality} inputs; supported: "
                                        f"{', '.join(spec.extensions)}")
            if not Path(value).is_file():
                raise InputError(value, "file not found")
        missing = [o for o in spec.required if o not in options]
        if missing:
            raise InputError(path, f"{modality} inputs need --{' --'.join(missing)}")


class ChatSession:
    """The state of one conversation: inputs (loaded once), history, sampling options."""

    def __init__(self, model, processor, gen, out=sys.stdout):
        self.model, self.processor, self.gen, self.out = model, processor, gen, out
        self.inputs: dict[str, object] = {}  # modality -> loaded tensor (one input per modality)
        self.history: list[tuple[str, str]] = []

    def say(self, text: str = "", end: str = "\n") -> None:
        print(text, end=end, file=self.out, flush=True)

    def add_input(self, modality: str, source) -> None:
        self.inputs[modality] = self.processor.load_input(modality, source)

    def command(self, line: str) -> bool:
        """Run a /command; False means leave."""
        from ..data.errors import InputError
        from ..modalities import get, is_registered

        name, *rest = shlex.split(line[1:]) or [""]
        if name in ("quit", "exit"):
            return False
        if name == "help":
            self.say("/<modality> PATH [option=value ...]  add or replace an input ("
                     + ", ".join(self.model.config.modalities) + ")\n/inputs  the current inputs\n"
                     "/reset  clear the conversation history\n/quit  leave (also Ctrl-D)\n"
                     "Ctrl-C while an answer streams stops it.")
        elif name == "reset":
            self.history.clear()
            self.say("(history cleared)")
        elif name == "inputs":
            self.say(", ".join(f"{m} {tuple(x.shape)}" for m, x in self.inputs.items()) or "(no inputs)")
        elif is_registered(name) and get(name).name in self.model.config.modalities:
            modality = get(name).name
            if not rest:
                self.say(f"usage: /{name} PATH [option=value ...]")
                return True
            options = dict(o.split("=", 1) for o in rest[1:] if "=" in o)
            try:
                self.add_input(modality, {"path": rest[0], **options})
            except InputError as exc:
                self.say(f"error: {exc}")
                return True
            self.say(f"({modality} input: {rest[0]})")
        else:
            self.say(f"unknown command /{name}; /help lists the commands")
        return True

    def answer(self, question: str) -> str:
        from ..data.collate import move_batch
        from ..generation import stream_generate

        model, processor = self.model, self.processor
        sample = processor.prompt_sample(question, list(self.inputs.items()), history=self.history)
        batch = move_batch(processor.collate([sample], padding_side="left", with_labels=False), model.device,
                           next(model.upm.parameters()).dtype)
        answer = ""
        try:
            for piece in stream_generate(model, processor, batch, self.gen):
                answer += piece
                self.say(piece, end="")
        except KeyboardInterrupt:  # the generation was stopped and joined before this runs
            self.say(" [stopped]", end="")
        self.say()
        self.history.append((question, answer.strip()))
        return answer


def run(args: argparse.Namespace) -> int:
    import torch

    from ..generation import GenerationConfig
    from ..inference import load_for_inference
    from ..processing import OneLLMProcessor

    inputs = inputs_from_args(args)
    _check_paths(inputs)
    torch.manual_seed(args.seed)
    model = load_for_inference(args.model, args.device, args.dtype)
    processor = OneLLMProcessor.from_pretrained(args.model)
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    session = ChatSession(model, processor, gen)
    for modality, path, options in inputs:
        session.add_input(modality, {"path": path, **options})
    dtype = next(model.upm.parameters()).dtype
    session.say(f"OneLLM chat: {args.model} on {model.device}, {str(dtype).removeprefix('torch.')}; modalities "
                f"{', '.join(model.config.modalities)}; inputs: {', '.join(session.inputs) or 'none'}. "
                "/help lists the commands.")
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            session.say()
            return 0
        except KeyboardInterrupt:
            session.say("\n(/quit or Ctrl-D leaves)")
            continue
        if not line:
            continue
        if line.startswith("/"):
            if not session.command(line):
                return 0
            continue
        try:
            session.answer(line)
        except KeyboardInterrupt:  # Ctrl-C before the answer streamed, or again while it stopped: the turn ends
            session.say(" [stopped]")
