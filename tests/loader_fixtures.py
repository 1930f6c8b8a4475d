"""Writers of small input files for the loader tests (videos, audio, meshes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

VIDEO_BASE, VIDEO_STEP = 10, 8  # frame i is grey 10 + 8 * i: the decoded colour tells which frame it was


def frame_grey(index: int) -> int:
    return VIDEO_BASE + VIDEO_STEP * index


def write_video(path: Path, n_frames: int = 30, fps: int = 10, width: int = 64, height: int = 48) -> Path:
    """H.264 mp4; frame i is grey ``frame_grey(i)`` with a black first and a white last 8-px band.

    The bands run along the long side (columns for landscape, rows for portrait), so the first crop holds
    the black band and the last crop the white one.
    """
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "8"}
        for i in range(n_frames):
            frame = np.full((height, width, 3), frame_grey(i), np.uint8)
            if width >= height:
                frame[:, :8], frame[:, -8:] = 0, 255
            else:
                frame[:8], frame[-8:] = 0, 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_no_video_stream(path: Path) -> Path:
    """A valid mp4 container holding no video frames (PyAV writes the header only)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    return path


def sine(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_m4a(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Mono AAC in an m4a container (soundfile cannot read it: exercises the PyAV path)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples[None], format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def face_coloured_box(extents=(2.0, 1.0, 1.0)):
    """A trimesh box whose first 6 faces are red and the other 6 blue."""
    import trimesh

    box = trimesh.creation.box(extents=extents)
    colors = np.zeros((len(box.faces), 4), np.uint8)
    colors[:, 3] = 255
    colors[:6, 0], colors[6:, 2] = 255, 255
    box.visual.face_colors = colors
    return box


def vertex_coloured_box():
    """A trimesh box with red and green vertices (OBJ can store vertex colours)."""
    import trimesh

    box = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    colors = np.tile(np.array([0, 255, 0, 255], np.uint8), (len(box.vertices), 1))
    colors[:4] = [255, 0, 0, 255]
    box.visual.vertex_colors = colors
    return box
