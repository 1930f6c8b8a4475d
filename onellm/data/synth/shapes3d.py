"""3-D objects of the synthetic world: coloured trimesh primitives, saved as meshes or sampled point clouds.

A point sample is either a binary ``.ply`` mesh with per-vertex colours (the loader samples its surface) or a
PointLLM-style ``.npy`` (N, 6) = xyz + rgb in [0, 1] sampled area-uniformly on the surface. Both get a random
rotation about the vertical axis and a random scale (the loader's ``pc_norm`` removes the scale again) and mild
colour noise. Objects stand upright, as in Objaverse / Cap3D (a cone's apex up, a torus lying flat): with a random
3-D rotation the point tokenizer's grouped absolute coordinates carried the shape only in rotation invariants, and
the stand-in model captioned every shape as the same word (point shape at chance, 12/48, after the whole
quickstart; upright: 42/48 after 1028 point steps of stage II alone).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .render import COLOUR_RGB

NUM_POINTS = 8192  # PointLLM / Cap3D cloud size


def primitive(rng: np.random.Generator, shape: str):
    """An untransformed ``trimesh.Trimesh`` of ``shape`` centred near the origin, ~unit size."""
    import trimesh

    if shape == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    elif shape == "cube":
        mesh = trimesh.creation.box(extents=(1.6, 1.6, 1.6))
    elif shape == "cone":
        mesh = trimesh.creation.cone(radius=1.0, height=rng.uniform(1.6, 2.2), sections=48)
        mesh.apply_translation(-mesh.bounds.mean(axis=0))
    elif shape == "torus":
        mesh = trimesh.creation.torus(major_radius=1.0, minor_radius=rng.uniform(0.25, 0.4),
                                      major_sections=48, minor_sections=16)
    else:
        raise ValueError(f"unknown 3-D shape {shape!r}")
    return mesh


def posed_mesh(rng: np.random.Generator, shape: str, colour: str):
    """The primitive upright with a random turn about the vertical axis, scale and offset and per-vertex colours
    (RGBA uint8)."""
    import trimesh

    mesh = primitive(rng, shape)
    pose = trimesh.transformations.rotation_matrix(2 * np.pi * rng.random(3)[0], [0, 0, 1])
    pose[:3, :3] *= rng.uniform(0.5, 2.0)
    pose[:3, 3] = rng.uniform(-0.5, 0.5, 3)
    mesh.apply_transform(pose)
    base = np.asarray(COLOUR_RGB[colour], np.float32) + rng.uniform(-15, 15, 3)
    rgb = np.clip(base + rng.normal(0, 6, (len(mesh.vertices), 3)), 0, 255)  # (V, 3)
    rgba = np.concatenate([np.round(rgb), np.full((len(rgb), 1), 255)], axis=1).astype(np.uint8)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba)
    return mesh


def write_mesh(path: Path, rng: np.random.Generator, shape: str, colour: str) -> None:
    """A coloured binary PLY mesh."""
    posed_mesh(rng, shape, colour).export(str(path), file_type="ply")


def sample_cloud(rng: np.random.Generator, shape: str, colour: str, num_points: int = NUM_POINTS) -> np.ndarray:
    """Surface samples of a posed primitive -> (num_points, 6) float32 = xyz + rgb in [0, 1]."""
    import trimesh

    mesh = posed_mesh(rng, shape, colour)
    points, faces = trimesh.sample.sample_surface(mesh, num_points, seed=int(rng.integers(2**31 - 1)))
    base = mesh.visual.vertex_colors[mesh.faces[faces, 0], :3].astype(np.float32) / 255  # (N, 3)
    rgb = np.clip(base + rng.normal(0, 0.02, base.shape), 0, 1)
    return np.concatenate([points, rgb], axis=1).astype(np.float32)
