"""The demo's input widgets, one per modality of the model, built from the modality registry.

Which widget a modality gets is its definition's ``demo_kind`` (``onellm.modalities``; a modality without one gets a
plain file upload). Each *kind* is one class here:

=============  ==========================================================  ===========================================
kind           upload                                                      preview
=============  ==========================================================  ===========================================
image          gradio Image (upload, clipboard, webcam)                    the Image itself
video          gradio Video (upload, webcam)                               its player
audio          gradio Audio (upload, microphone)                           its player
point_cloud    File (``.npy`` / ``.pt`` clouds, meshes)                    Model3D for meshes, a rendered scatter for
                                                                           arrays (``previews.point_cloud_preview``)
paired_map     Image of the map + Image of its paired RGB photo            the two Images
signal         File (``.npy``) + the loader's options (timestamps file,    a line plot of the channels
               window start / end, rate)
voxels         File (``.npy``)                                             a small heat map
file           File with the loader's extensions + its options             none
=============  ==========================================================  ===========================================

Extra fields come from the modality's loader options: a path option becomes a file upload (an Image for a
``paired_map``'s ``rgb``), a number option a text box (empty = not given); other options are not offered. The
uploads reach the handlers as the uploaded files themselves (never re-encoded by gradio), so the loader decides
what a file is worth and its :class:`~onellm.data.errors.InputError` is what the user reads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import gradio as gr

from ..data.errors import InputError
from ..data.loaders.formats import MESH_FILES
from ..modalities import get as modality_definition
from . import previews

MODEL3D_FILES = (".obj", ".glb", ".gltf", ".stl", ".ply")  # what gradio's Model3D can show


class RawImage(gr.Image):
    """``gr.Image`` whose uploads reach the handler as the uploaded file, unread: gradio would open it with PIL
    first (a corrupt file would fail inside gradio, not in our loader) and may convert it (a 16-bit depth map
    would lose its depth). Pasted / webcam pictures (data URLs) are saved by gradio as usual."""

    def get_block_name(self) -> str:  # the frontend of gr.Image
        return "image"

    def preprocess(self, payload):
        if payload is not None and getattr(payload, "path", None) and not str(payload.url or "").startswith("data:"):
            return str(payload.path)
        return super().preprocess(payload)


def ui_kind(modality: str) -> str:
    """The widget kind of a modality (its registry ``demo_kind``; ``file`` when the demo has no such kind)."""
    kind = getattr(modality_definition(modality), "demo_kind", None) or "file"
    return kind if kind in KINDS else "file"


@dataclass
class ModalityWidget:
    """The components of one modality's input: ``main`` (the upload), ``extras`` (loader option -> component),
    ``previews`` (outputs refreshed after each upload) and ``status`` (what encoding said)."""

    modality: str
    kind: "WidgetKind"
    main: Any
    extras: dict[str, Any] = field(default_factory=dict)
    previews: list[Any] = field(default_factory=list)
    status: Any = None

    def triggers(self) -> list[Any]:
        """(component, event name) pairs that re-encode: uploads on change, text fields when left or submitted."""
        out = []
        for component in self.inputs:
            if isinstance(component, gr.Textbox):
                out += [(component, "blur"), (component, "submit")]
            else:
                out.append((component, "change"))
        return out

    @property
    def inputs(self) -> list[Any]:
        """The components whose values :meth:`request` reads, in order."""
        return [self.main, *self.extras.values()]

    def request(self, values: Sequence[Any]) -> tuple[str, dict[str, Any]] | None:
        """(path, loader options) of the widget's current values; None when nothing is uploaded."""
        path = _path(values[0])
        if path is None:
            return None
        spec = modality_definition(self.modality).loader
        options = {}
        for name, value in zip(self.extras, values[1:]):
            if name in spec.path_options:
                value = _path(value)
            elif name in spec.number_options:
                value = _number(name, value, path)
            if value is not None and value != "":
                options[name] = value
        return path, options

    def missing(self, options: dict[str, Any]) -> list[str]:
        """Required loader options not given (a depth map without its RGB image)."""
        return [o for o in modality_definition(self.modality).loader.required if o not in options]

    def preview_updates(self, entry, backend) -> list[Any]:
        return self.kind.preview_updates(self, entry, backend)

    def cleared_previews(self) -> list[Any]:
        return self.kind.preview_updates(self, None, None)


def _path(value: Any) -> str | None:
    """A component value -> a file path (gradio hands over str paths, sometimes a dict or FileData)."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, dict):
        return value.get("path") or value.get("name")
    return getattr(value, "path", None) or getattr(value, "name", None)


def _number(name: str, value: Any, path: str) -> float | None:
    """A number field's value: empty -> not given; text that is no number -> InputError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(path, f"{name} must be a number, got {value!r}") from None


def capitalize(text: str) -> str:
    """First letter upper case, unless the first word is an acronym ("fMRI recording" stays)."""
    return text[:1].upper() + text[1:] if text[:2].islower() or len(text) < 2 else text


def _label(modality: str) -> str:
    """ "Audio clip (.wav, .flac, .ogg, …)": the noun and the first file extensions the loader reads."""
    definition = modality_definition(modality)
    extensions = definition.loader.extensions
    shown = ", ".join(extensions[:3]) + (", …" if len(extensions) > 3 else "")
    return f"{capitalize(definition.noun)} ({shown})"


def _elem(modality: str, part: str | None = None) -> str:
    return f"input-{modality}" if part is None else f"input-{modality}-{part}"


class WidgetKind:
    """How one kind of modality is offered: :meth:`main`, :meth:`extra` fields, :meth:`make_previews`."""

    def main(self, modality: str) -> Any:
        return gr.File(label=_label(modality), file_types=list(modality_definition(modality).loader.extensions),
                       type="filepath", elem_id=_elem(modality))

    def extra(self, modality: str, option: str) -> Any | None:
        spec = modality_definition(modality).loader
        help_text = spec.option_help.get(option, option)
        label = f"{option}: {help_text}" + ("" if option in spec.required else " (optional)")
        if option in spec.path_options:
            return gr.File(label=label, type="filepath", elem_id=_elem(modality, option))
        if option in spec.number_options:  # a text box: empty means "not given" (a Number box would send 0)
            return gr.Textbox(label=label, value="", placeholder="empty: not given", max_lines=1,
                              elem_id=_elem(modality, option))
        return None  # other options (e.g. a decoder choice) are not offered in the demo

    def make_previews(self, modality: str) -> list[Any]:
        return []

    def preview_updates(self, widget: ModalityWidget, entry, backend) -> list[Any]:
        return []

    def build(self, modality: str) -> ModalityWidget:
        with gr.Row():  # the upload and its fields side by side (wrapping on narrow screens)
            main = self.main(modality)
            extras = {}
            for option in modality_definition(modality).loader.options:
                component = self.extra(modality, option)
                if component is not None:
                    extras[option] = component
        widget = ModalityWidget(modality, self, main, extras, self.make_previews(modality))
        widget.status = gr.Markdown("", elem_id=f"status-{modality}")
        return widget


class ImageKind(WidgetKind):
    def main(self, modality: str) -> Any:
        return RawImage(label=_label(modality), type="filepath", sources=["upload", "clipboard", "webcam"],
                        image_mode=None, height=260, elem_id=_elem(modality))


class VideoKind(WidgetKind):
    def main(self, modality: str) -> Any:
        return gr.Video(label=_label(modality), sources=["upload", "webcam"], height=260, elem_id=_elem(modality))


class AudioKind(WidgetKind):
    def main(self, modality: str) -> Any:
        return gr.Audio(label=_label(modality), type="filepath", sources=["upload", "microphone"],
                        elem_id=_elem(modality))


class PairedMapKind(WidgetKind):
    """A depth / normal map and the RGB photo it belongs to, side by side."""

    def main(self, modality: str) -> Any:
        return RawImage(label=_label(modality), type="filepath", sources=["upload"], image_mode=None, height=220,
                        elem_id=_elem(modality))

    def extra(self, modality: str, option: str) -> Any | None:
        if option == "rgb":
            return RawImage(label="Its RGB image", type="filepath", sources=["upload"], image_mode=None, height=220,
                            elem_id=_elem(modality, option))
        return super().extra(modality, option)


class PointCloudKind(WidgetKind):
    def make_previews(self, modality: str) -> list[Any]:
        with gr.Row():
            mesh = gr.Model3D(label="Mesh", visible=False, height=260, elem_id=f"preview-{modality}-mesh")
            cloud = gr.Image(label="Point cloud (as the model sees it)", visible=False, interactive=False,
                             height=260, elem_id=f"preview-{modality}")
        return [mesh, cloud]

    def preview_updates(self, widget: ModalityWidget, entry, backend) -> list[Any]:
        if entry is None:
            return [gr.update(value=None, visible=False), gr.update(value=None, visible=False)]
        suffix = Path(entry.path).suffix.lower()
        if suffix in MODEL3D_FILES and suffix in MESH_FILES:
            return [gr.update(value=entry.path, visible=True), gr.update(value=None, visible=False)]
        picture = previews.point_cloud_preview(entry.tensor) if entry.tensor is not None else None
        return [gr.update(value=None, visible=False), gr.update(value=picture, visible=picture is not None)]


class _PlotKind(WidgetKind):
    title = "Preview"

    def make_previews(self, modality: str) -> list[Any]:
        return [gr.Image(label=self.title, visible=False, interactive=False, elem_id=f"preview-{modality}")]

    def picture(self, entry, backend):
        raise NotImplementedError

    def preview_updates(self, widget: ModalityWidget, entry, backend) -> list[Any]:
        if entry is None or entry.tensor is None:
            return [gr.update(value=None, visible=False)]
        return [gr.update(value=self.picture(entry, backend), visible=True)]


class SignalKind(_PlotKind):
    title = "Channels over the window the model reads"

    def main(self, modality: str) -> Any:
        return gr.File(label=_label(modality), file_types=[".npy"], type="filepath", elem_id=_elem(modality))

    def picture(self, entry, backend):
        section = backend.config.inputs.get(entry.modality) if backend is not None else None
        return previews.imu_preview(entry.tensor, rate=getattr(section, "rate", 200))


class VoxelsKind(_PlotKind):
    title = "Voxel responses"

    def main(self, modality: str) -> Any:
        return gr.File(label=_label(modality), file_types=[".npy"], type="filepath", elem_id=_elem(modality))

    def picture(self, entry, backend):
        return previews.fmri_preview(entry.tensor)


KINDS: dict[str, WidgetKind] = {"image": ImageKind(), "video": VideoKind(), "audio": AudioKind(),
                                "point_cloud": PointCloudKind(), "paired_map": PairedMapKind(),
                                "signal": SignalKind(), "voxels": VoxelsKind(), "file": WidgetKind()}


def build_widget(modality: str) -> ModalityWidget:
    """The widget of one modality (inside the current gradio layout context)."""
    return KINDS[ui_kind(modality)].build(modality)
