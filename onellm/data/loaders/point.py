"""Point cloud loader (spec §3.4) -> (num_points, 6) float32 = [x, y, z, r, g, b], xyz by ``pc_norm``.

Accepted sources:

* ``.npy`` (N, 6) xyz + rgb (PointLLM/Cap3D layout) or (N, 3) xyz only (colour filled with 0);
  ``.pt``/``.pth`` tensors as the finetune loader saved them, (6, N) (transposed) or (N, 6) (spec §7.12:
  we apply ``pc_norm`` to them too, which is a no-op on already normalised clouds).
  rgb with a maximum above 1 is taken to be 0..255 and divided by 255.
* meshes ``.obj/.ply/.off/.stl/.glb/.gltf`` (trimesh): ``num_points`` area-weighted surface samples. Colours:
  face colours, vertex colours (barycentric interpolation), texture (uv lookup) or a material's base colour;
  uncoloured meshes get 0, like xyz-only clouds. A ``.ply`` without faces is a point cloud: its vertices and colours are used.

Point count: N > num_points keeps a random subset without replacement in train and the evenly spaced
``linspace`` subset in eval; N < num_points keeps every point and repeats some (random in train, cyclic in
eval). Mesh sampling uses a fixed seed in eval and a seed drawn from torch's RNG in train. ``pc_norm`` runs
last so the output always has centroid 0 and max radius 1 (a degenerate cloud of identical points stays at 0).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .sources import as_source, opened, suffix
from .fmri import read_npy

MISSING_COLOR = 0.0  # colour of points whose source has none
EVAL_SEED = 0  # surface-sampling seed in eval (deterministic)
ARRAY_EXTENSIONS: tuple[str, ...] = (".npy", ".pt", ".pth")
MESH_EXTENSIONS: tuple[str, ...] = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")
EXTENSIONS = ARRAY_EXTENSIONS + MESH_EXTENSIONS


def pc_norm(pc: torch.Tensor) -> torch.Tensor:
    """Centre xyz on the centroid and scale it to max radius 1; other channels untouched. (N, C) -> (N, C)."""
    xyz = pc[:, :3] - pc[:, :3].mean(dim=0)
    radius = xyz.norm(dim=1).max()
    if radius > 0:  # all points identical: leave them centred instead of dividing by zero
        xyz = xyz / radius
    return torch.cat([xyz, pc[:, 3:]], dim=1)


def _read_array(path) -> np.ndarray:
    if suffix(path) == ".npy":
        return read_npy(opened(path))
    try:
        data = torch.load(opened(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(path, f"cannot read tensor file: {exc}") from exc
    if not isinstance(data, torch.Tensor):
        raise InputError(path, f"expected a tensor, found {type(data).__name__}")
    data = data.detach().float().numpy()
    if data.ndim == 2 and data.shape[0] in (3, 6) and data.shape[1] not in (3, 6):
        data = data.T  # the finetune loader's (C, N) layout
    return data


def _with_color(path, cloud: np.ndarray) -> np.ndarray:
    """(N, 3|6) -> (N, 6) float32 with rgb in [0, 1]."""
    if cloud.ndim != 2 or cloud.shape[1] not in (3, 6) or cloud.shape[0] == 0:
        raise InputError(path, f"expected a point array of shape (N, 6) or (N, 3), got {tuple(cloud.shape)}")
    if not np.issubdtype(cloud.dtype, np.number) or np.iscomplexobj(cloud):
        raise InputError(path, f"expected a real-valued point array, got dtype {cloud.dtype}")
    cloud = cloud.astype(np.float32)
    if not np.isfinite(cloud).all():
        raise InputError(path, "point cloud contains NaN or infinite values")
    if cloud.shape[1] == 3:
        return np.concatenate([cloud, np.full_like(cloud, MISSING_COLOR)], axis=1)
    if cloud[:, 3:].max() > 1.0:  # 0..255 colours
        cloud[:, 3:] /= 255.0
    return cloud


def _rgb01(colors: np.ndarray) -> np.ndarray:
    return np.asarray(colors, dtype=np.float32)[:, :3] / 255.0  # RGBA uint8 -> rgb in [0, 1]


def _vertex_cloud(geom) -> np.ndarray:
    """A face-less geometry (e.g. a PLY point cloud): its vertices and their colours -> (N, 6) float32."""
    import trimesh

    vertices = np.asarray(geom.vertices, dtype=np.float32)  # (N, 3)
    if isinstance(geom, trimesh.PointCloud):
        colors = np.asarray(geom.colors)  # (N, 4) RGBA, or empty without colours
    else:  # trimesh reports a default grey for uncoloured meshes: kind None means "no colour"
        colors = np.asarray(geom.visual.vertex_colors) if geom.visual.kind is not None else np.empty(0)
    if colors.ndim == 2 and len(colors) == len(vertices):
        return np.concatenate([vertices, _rgb01(colors)], axis=1)
    return np.concatenate([vertices, np.full_like(vertices, MISSING_COLOR)], axis=1)


def _sample_mesh(path, num_points: int, seed: int) -> np.ndarray:
    """Load a mesh / point-cloud file with trimesh -> (M, 6) float32 (M = num_points for meshes)."""
    import trimesh

    try:  # trimesh reads a file object given its type (the extension)
        geom = trimesh.load(opened(path), file_type=suffix(path).lstrip("."))
        if isinstance(geom, trimesh.Scene):
            if not geom.geometry:
                raise ValueError("scene holds no geometry")
            geom = geom.to_mesh()  # concatenates the scene's meshes with their transforms
        if isinstance(geom, trimesh.PointCloud) or (isinstance(geom, trimesh.Trimesh) and len(geom.faces) == 0):
            return _vertex_cloud(geom)
        if not isinstance(geom, trimesh.Trimesh):
            raise ValueError(f"unsupported geometry {type(geom).__name__}")
        kind = geom.visual.kind
        textured = kind == "texture" and getattr(geom.visual.material, "image", None) is not None
        points, face_index, *rest = trimesh.sample.sample_surface(
            geom, num_points, sample_color=textured, return_barycentric=True, seed=seed)
        if textured:
            rgb = _rgb01(rest[0])
        elif kind == "face":
            rgb = _rgb01(geom.visual.face_colors[face_index])
        elif kind == "texture":  # material without an image: its single base colour
            rgb = _rgb01(np.broadcast_to(geom.visual.material.main_color, (num_points, 4)))
        elif kind == "vertex":
            corners = geom.visual.vertex_colors[geom.faces[face_index]].astype(np.float32)  # (M, 3 corners, 4)
            rgb = _rgb01(np.einsum("mk,mkc->mc", rest[-1], corners))  # barycentric blend of corner colours
        else:
            rgb = np.full((num_points, 3), MISSING_COLOR, np.float32)
        return np.concatenate([np.asarray(points, np.float32), rgb], axis=1)
    except InputError:
        raise
    except Exception as exc:  # trimesh raises many types (ValueError, KeyError, ModuleNotFoundError, ...)
        raise InputError(path, f"cannot load mesh: {exc}") from exc


def resample_points(cloud: torch.Tensor, num_points: int, train: bool) -> torch.Tensor:
    """(N, C) -> (num_points, C): subsample or repeat points (random in train, deterministic in eval)."""
    n = cloud.shape[0]
    if n > num_points:
        idx = torch.randperm(n)[:num_points] if train else torch.linspace(0, n - 1, num_points).long()
    elif n < num_points:
        extra = torch.randint(n, (num_points - n,)) if train else torch.arange(num_points - n) % n
        idx = torch.cat([torch.arange(n), extra])
    else:
        return cloud
    return cloud[idx]


def load_point(path, *, train: bool, num_points: int) -> torch.Tensor:
    """Load a point cloud or mesh (a path or a named file object) -> (num_points, 6) float32."""
    path = as_source(path)
    if suffix(path) in MESH_EXTENSIONS:
        seed = int(torch.randint(2**31 - 1, ()).item()) if train else EVAL_SEED
        cloud = _sample_mesh(path, num_points, seed)
    else:
        cloud = _read_array(path)
    cloud = torch.from_numpy(_with_color(path, cloud))  # (N, 6)
    return pc_norm(resample_points(cloud, num_points, train)).contiguous()
