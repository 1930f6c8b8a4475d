"""Small pictures of inputs gradio has no player for, drawn (matplotlib, Agg) from the tensor the model sees.

* point clouds (``.npy`` / ``.pt``): the (N, 6) xyz + rgb cloud as a 3-D scatter (meshes are shown by gradio's
  Model3D instead);
* IMU windows: the 6 channels (acc xyz, gyro xyz) over time as a line plot;
* fMRI: the voxel responses as a small heat map (voxels in reading order, rows of a square).

Each returns an (H, W, 3) uint8 array; nothing here imports gradio.
"""
from __future__ import annotations

import math

import numpy as np
import torch

IMU_CHANNELS = ("acc x", "acc y", "acc z", "gyro x", "gyro y", "gyro z")


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _to_array(fig) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3) uint8


def point_cloud_preview(cloud: torch.Tensor, max_points: int = 4096) -> np.ndarray:
    """(N, C >= 3) xyz (+ rgb in channels 3:6, 0..1 or 0..255) -> a 3-D scatter, 320 x 320."""
    pts = cloud.detach().float().cpu().numpy()
    if pts.shape[0] > max_points:  # evenly spaced subset: the picture, not the model input
        pts = pts[np.linspace(0, pts.shape[0] - 1, max_points).astype(int)]
    colours = None
    if pts.shape[1] >= 6:
        rgb = pts[:, 3:6]
        colours = np.clip(rgb / 255.0 if rgb.max() > 1.0 else rgb, 0.0, 1.0)
    fig = _figure(3.2, 3.2)
    ax = fig.add_subplot(projection="3d")
    ax.scatter(pts[:, 0], pts[:, 2], pts[:, 1], c=colours if colours is not None else "tab:blue", s=2,
               depthshade=False, linewidths=0)
    ax.set_axis_off()
    ax.view_init(elev=20, azim=35)
    fig.subplots_adjust(0, 0, 1, 1)
    return _to_array(fig)


def imu_preview(signal: torch.Tensor, rate: float) -> np.ndarray:
    """(C, T) IMU window at ``rate`` Hz -> a line plot of every channel over seconds, 480 x 240."""
    x = signal.detach().float().cpu().numpy()
    t = np.arange(x.shape[1]) / float(rate)
    fig = _figure(4.8, 2.4)
    ax = fig.add_subplot()
    for c in range(x.shape[0]):
        ax.plot(t, x[c], linewidth=0.8, label=IMU_CHANNELS[c] if c < len(IMU_CHANNELS) else f"ch {c}")
    ax.set_xlabel("seconds")
    ax.legend(fontsize=6, ncol=3, loc="upper right")
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _to_array(fig)


def fmri_preview(voxels: torch.Tensor) -> np.ndarray:
    """(1, V) or (V,) voxel responses -> a heat map of a square of side ceil(sqrt(V)), 320 x 280."""
    v = voxels.detach().float().cpu().numpy().reshape(-1)
    side = math.ceil(math.sqrt(v.size))
    grid = np.full(side * side, np.nan, dtype=np.float32)
    grid[: v.size] = v
    fig = _figure(3.2, 2.8)
    ax = fig.add_subplot()
    image = ax.imshow(grid.reshape(side, side), cmap="viridis", interpolation="nearest")
    ax.set_title(f"{v.size} voxels", fontsize=8)
    ax.set_axis_off()
    fig.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    fig.tight_layout()
    return _to_array(fig)
