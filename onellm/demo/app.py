"""The gradio app of ``onellm demo``: input tabs (one per modality of the model), a streaming multi-turn chat, stop,
reset, sampling controls and examples. The model side is :class:`~onellm.demo.backend.DemoBackend`.

* Each upload is encoded when it arrives (its tab shows the loader's error, or what was encoded, and a preview);
  a turn reuses the encodings. Every non-empty input goes into a turn (video + audio together, for instance),
  blocks first in the model's modality order, as the released model was trained.
* The chat is a ``gr.Chatbot`` of messages; the conversation so far (including a stopped, partial answer) is the
  history of the next turn. An empty question asks the first input's caption prompt.
* Stop sets the session's stop event (the row ends at its next token; the partial answer stays) and cancels the
  streaming event; Reset does the same and clears the conversation (the inputs stay).
* Concurrency: gradio's queue runs up to ``concurrency`` chat events at once; they meet in the backend's batcher,
  which runs the ones waiting together as one batch.
"""
from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from typing import Any, Sequence

import gradio as gr

from ..data.errors import InputError
from ..generation import GenerationConfig
from ..modalities import get as modality_definition
from .backend import DemoBackend, history_from_messages, model_modalities
from .examples import Example
from .widgets import ModalityWidget, build_widget, capitalize

CSS = """
#modality-tabs .tab-container button {padding-left: 9px; padding-right: 9px}
#status, .onellm-status {min-height: 1.5em}
.onellm-error {color: #b91c1c}
footer {display: none !important}
"""
THEME_FONTS = dict(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def theme():
    """The default theme with system fonts (nothing is fetched from the internet)."""
    return gr.themes.Default(**THEME_FONTS)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def escape_markdown(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def error_markdown(error: BaseException | str) -> str:
    """How an error reads in a status line: the message as it is (the loader's ``InputError`` names the file)."""
    return f"**Error:** {escape_markdown(str(error))}"


def text_part(text: str) -> dict:
    """A chat message's text as a content part: gradio shows a plain string dedented (``inspect.cleandoc``), a part
    verbatim, so the conversation shows exactly the model's answer."""
    return {"type": "text", "text": text}


def tab_label(modality: str) -> str:
    """A short tab name: the first word of the modality's noun ("IMU recording" -> "IMU", "point cloud" -> "Point")."""
    return capitalize(modality_definition(modality).noun.split()[0])


class DemoApp:
    """Builds the gradio Blocks around a backend (module docstring).

    Args:
        backend: the model side.
        examples: clickable examples (``onellm.demo.examples``).
        defaults: the sampling controls' starting values.
        concurrency: chat events gradio runs at once (the batcher's batch size should match it).
        title: the page's heading.
        template: the prompt control's starting value ("chat", or "none" for alignment-only models).
    """

    def __init__(self, backend: DemoBackend, examples: Sequence[Example] = (), defaults: GenerationConfig | None = None,
                 concurrency: int = 4, queue_size: int | None = 64, title: str = "OneLLM", template: str = "chat"):
        self.backend, self.examples = backend, list(examples)
        self.template = template
        self.stream_interval_s = 0.05  # streaming updates sent to the browser at most every 50 ms
        self.defaults = defaults or GenerationConfig()
        self.concurrency, self.queue_size, self.title = concurrency, queue_size, title
        self.widgets: list[ModalityWidget] = []
        self._stops: dict[str, set[threading.Event]] = defaultdict(set)
        self._stops_lock = threading.Lock()

    # ------------------------------------------------------------------------------------------------
    # Sessions
    def _new_stop(self, session: str) -> threading.Event:
        event = threading.Event()
        with self._stops_lock:
            self._stops[session].add(event)
        return event

    def _drop_stop(self, session: str, event: threading.Event) -> None:
        with self._stops_lock:
            if session in self._stops:
                self._stops[session].discard(event)
                if not self._stops[session]:
                    del self._stops[session]

    def stop_session(self, session: str) -> int:
        """Stop every turn this browser session is generating; returns how many."""
        with self._stops_lock:
            events = list(self._stops.pop(session, ()))
        for event in events:
            event.set()
        return len(events)

    # ------------------------------------------------------------------------------------------------
    # Inputs
    def _split(self, values: Sequence[Any]) -> list[tuple[ModalityWidget, Sequence[Any]]]:
        out, i = [], 0
        for widget in self.widgets:
            n = len(widget.inputs)
            out.append((widget, values[i:i + n]))
            i += n
        return out

    def encode_inputs(self, values: Sequence[Any]) -> list:
        """Every filled widget -> its encoding (cached); raises InputError naming what is wrong."""
        encoded = []
        for widget, own in self._split(values):
            request = widget.request(own)
            if request is None:
                continue
            path, options = request
            missing = widget.missing(options)
            if missing:
                raise InputError(path, f"a {modality_definition(widget.modality).noun} needs its "
                                       f"{' and '.join(missing)} input as well")
            encoded.append(self.backend.encode(widget.modality, path, options))
        return encoded

    def on_upload(self, widget: ModalityWidget, *values: Any) -> list[Any]:
        """A widget's value changed: encode it now, show what happened and a preview."""
        try:
            request = widget.request(values)
            if request is None:
                return ["", *widget.cleared_previews()]
            path, options = request
            missing = widget.missing(options)
            if missing:
                return [f"Add the {' and '.join(missing)} input too.", *widget.cleared_previews()]
            entry = self.backend.encode(widget.modality, path, options)
        except Exception as exc:  # the loader's InputError, or anything else: shown, the server stays up
            return [error_markdown(exc), *widget.cleared_previews()]
        shape = "×".join(str(s) for s in entry.block.shape)
        return [f"Encoded: a {shape} block, reused every turn.", *widget.preview_updates(entry, self.backend)]

    def _on_upload_event(self, widget: ModalityWidget):
        """The handler of one widget's change events (gradio wants a bare value for a single output)."""
        def handler(*values: Any):
            out = self.on_upload(widget, *values)
            return out[0] if len(out) == 1 else out

        return handler

    # ------------------------------------------------------------------------------------------------
    # Chat
    def respond(self, request: gr.Request, question: str, messages: list | None, temperature: float, top_p: float,
                max_new_tokens: float, template: str, *values: Any):
        """One turn: yields (chatbot messages, question box, status) as the answer streams."""
        messages = [{"role": m["role"], "content": m["content"]} for m in (messages or [])]
        question = (question or "").strip()
        try:
            encoded = self.encode_inputs(values)
        except Exception as exc:
            yield messages, gr.update(), error_markdown(exc)
            return
        if not encoded and not question:
            yield messages, gr.update(), "Upload an input or ask a question."
            return
        template = template if template in ("chat", "none") else "chat"
        if not question and template == "chat":
            question = self.backend.default_question([e.modality for e in encoded])
        history = history_from_messages(messages)
        gen = GenerationConfig(max_new_tokens=max(int(max_new_tokens), 1), temperature=max(float(temperature), 0.0),
                               top_p=min(max(float(top_p), 0.01), 1.0))
        session = getattr(request, "session_hash", None) or "anonymous"
        stop = self._new_stop(session)
        start = time.perf_counter()
        try:
            try:
                turn = self.backend.submit(question, history, encoded, gen, stop, template)
            except Exception as exc:
                yield messages, gr.update(), error_markdown(exc)
                return
            messages += [{"role": "user", "content": text_part(question or "(no prompt: a caption)")},
                         {"role": "assistant", "content": text_part("")}]
            yield messages, "", "Generating…"
            try:
                shown_at = 0.0
                for update in turn.stream():
                    messages[-1] = {"role": "assistant", "content": text_part(update.text)}
                    if not update.done:
                        now = time.perf_counter()
                        if now - shown_at >= self.stream_interval_s:  # the browser redraws at most this often
                            shown_at = now
                            yield messages, gr.update(), gr.update()  # the status stays: never hides "Stopped"
                        continue
                    seconds = time.perf_counter() - start
                    used = " + ".join(e.modality for e in encoded) or "text only"
                    batched = f", in a batch of {turn.batch_size}" if turn.batch_size > 1 else ""
                    status = ("Stopped; the partial answer stays in the conversation." if update.stopped
                              else f"Answered in {seconds:.1f} s ({used}{batched}).")
                    yield messages, gr.update(), status
            except Exception as exc:
                yield messages, gr.update(), error_markdown(exc)
        finally:
            self._drop_stop(session, stop)

    def stop(self, request: gr.Request):
        n = self.stop_session(getattr(request, "session_hash", None) or "anonymous")
        return "Stopped; the partial answer stays in the conversation." if n else gr.update()

    def reset(self, request: gr.Request):
        self.stop_session(getattr(request, "session_hash", None) or "anonymous")
        return [], "", ""

    # ------------------------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        backend = self.backend
        modalities = model_modalities(backend)
        self.widgets = []
        with gr.Blocks(title=f"{self.title} demo") as blocks:
            gr.Markdown(f"## {self.title}\nUpload inputs on the left (any combination the model takes: "
                        f"{', '.join(modality_definition(m).noun for m in modalities)}), then ask. "
                        "An empty question asks for a caption. Temperature 0 is greedy.")
            with gr.Row():
                with gr.Column(scale=5):
                    tabs = {}
                    with gr.Tabs(elem_id="modality-tabs"):
                        for modality in modalities:
                            with gr.Tab(tab_label(modality), id=modality,
                                        elem_id=f"tab-{modality}") as tab:
                                self.widgets.append(build_widget(modality))
                            tabs[modality] = tab
                with gr.Column(scale=6):
                    chatbot = gr.Chatbot(label="Conversation", height=420, elem_id="chatbot",
                                         buttons=["copy_all"], feedback_options=None)
                    question = gr.Textbox(label="Question", placeholder="Ask about the inputs (Enter sends)",
                                          lines=1, elem_id="question")
                    with gr.Row():
                        send = gr.Button("Send", variant="primary", elem_id="send")
                        stop = gr.Button("Stop", variant="stop", elem_id="stop")
                        reset = gr.Button("Reset", elem_id="reset")
                    status = gr.Markdown("", elem_id="status", elem_classes=["onellm-status"])
                    with gr.Accordion("Sampling", open=False):
                        temperature = gr.Slider(0.0, 1.5, value=self.defaults.temperature, step=0.05,
                                                label="Temperature (0 = greedy)", elem_id="temperature")
                        top_p = gr.Slider(0.05, 1.0, value=self.defaults.top_p, step=0.05, label="Top-p",
                                          elem_id="top-p")
                        max_new = gr.Slider(1, max(backend.config.max_seq_len, 16),
                                            value=min(self.defaults.max_new_tokens, backend.config.max_seq_len),
                                            step=1, label="Max new tokens", elem_id="max-new-tokens")
                        template = gr.Radio(["chat", "none"], value=self.template, elem_id="template",
                                            label="Prompt: chat (the conversation template) or none (the raw "
                                                  "question, no history: alignment-only models caption)")
            all_inputs = [c for w in self.widgets for c in w.inputs]
            for widget in self.widgets:
                for component, event in widget.triggers():
                    getattr(component, event)(self._on_upload_event(widget), inputs=widget.inputs,
                                              outputs=[widget.status, *widget.previews], show_progress="minimal")
            chat_inputs = [question, chatbot, temperature, top_p, max_new, template, *all_inputs]
            chat_outputs = [chatbot, question, status]
            events = [trigger(self.respond, chat_inputs, chat_outputs, concurrency_limit=self.concurrency,
                              concurrency_id="chat", show_progress="hidden")
                      for trigger in (send.click, question.submit)]
            stop.click(self.stop, None, [status], cancels=events)
            reset.click(self.reset, None, [chatbot, question, status], cancels=events)
            self._add_examples(tabs, all_inputs, question)
        blocks.queue(default_concurrency_limit=self.concurrency, max_size=self.queue_size)
        return blocks

    def _add_examples(self, tabs: dict[str, Any], all_inputs: list, question) -> None:
        """One example table per tab: each row sets every input (clearing the others) and the question."""
        by_tab: dict[str, list[Example]] = defaultdict(list)
        for example in self.examples:
            if example.tab in tabs:
                by_tab[example.tab].append(example)
        offsets, i = {}, 0
        for widget in self.widgets:
            offsets[widget.modality] = list(range(i, i + len(widget.inputs)))
            i += len(widget.inputs)
        for tab_name, examples in by_tab.items():
            rows, visible = [], set()
            for example in examples:
                given = {m: (path, options) for m, path, options in example.inputs}
                row: list[Any] = []
                for widget in self.widgets:
                    if widget.modality in given:
                        path, options = given[widget.modality]
                        row += [path, *[options.get(o) for o in widget.extras]]
                        visible.update(offsets[widget.modality])
                    else:
                        row += [None] * len(widget.inputs)
                rows.append(row + [example.question])
            with tabs[tab_name]:
                gr.Examples(rows, inputs=[*all_inputs, question], label="Examples (synthetic world)",
                            visible_columns=sorted(visible) + [len(all_inputs)], examples_per_page=6,
                            elem_id=f"examples-{tab_name}")


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, allowed_paths: Sequence[str] = (),
           block: bool = True, quiet: bool = False):
    """Start the server (``block=False`` returns at once, for tests and scripts)."""
    return app.launch(server_name=host, server_port=port, allowed_paths=list(allowed_paths), ssr_mode=False,
                      show_error=True, prevent_thread_lock=not block, quiet=quiet, theme=theme(), css=CSS,
                      inbrowser=False, share=False)
