"""File formats the loaders read, by kind of file (lower-case extensions with the dot).

Kept apart from the decoders so that the modality registry, manifest validation and ``--help`` can name the
accepted files without importing any decoder.
"""
from __future__ import annotations

IMAGE_FILES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
VIDEO_FILES: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv")
AUDIO_FILES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".wma", ".aiff", ".aif")
ARRAY_FILES: tuple[str, ...] = (".npy",)
POINT_ARRAY_FILES: tuple[str, ...] = (".npy", ".pt", ".pth")
MESH_FILES: tuple[str, ...] = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")
