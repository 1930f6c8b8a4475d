"""Pixels of the synthetic world: 2-D shape images, moving-ball videos and SDF-rendered 3-D scenes.

Everything is vectorised over pixels (numpy grids); the only Python loops run over frames or ray-marching
steps. Depth maps store the camera-space z-depth as 8-bit grey, NEAR = BRIGHT on a fixed metric scale
(``grey = 255 * (1 - (z - DEPTH_MIN) / (DEPTH_MAX - DEPTH_MIN))``, clipped; sky = 0), so absolute distance is
recoverable from a single map. Normal maps store camera-space unit normals as ``(n + 1) / 2 * 255`` with
x right, y up, z towards the camera (OpenGL convention: a surface facing the camera is (128, 128, 255));
pixels with no surface (sky) are (128, 128, 128).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Base RGB of each colour attribute (0..255); samples jitter around them.
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35), "green": (40, 175, 55), "blue": (40, 70, 220), "yellow": (230, 205, 35)}
# Object colours of depth scenes (colour is not a depth attribute): the attribute colours and a few more.
DEPTH_PALETTE: tuple[tuple[int, int, int], ...] = tuple(COLOUR_RGB.values()) + (
    (150, 60, 190), (235, 130, 30), (40, 190, 200), (225, 225, 225))
DEPTH_MIN, DEPTH_MAX = 1.0, 10.0  # metres mapped to grey 255 .. 0
SUPERSAMPLE = 4  # 2-D shapes are drawn at 4x and box-filtered: antialiased edges


def _jitter_colour(rng: np.random.Generator, rgb: tuple[int, int, int], spread: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-spread, spread, 3), 0, 255)  # (3,)


def _grid(height: int, width: int, factor: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in output-pixel units at ``factor``x resolution -> (y, x), each (H*f, W*f)."""
    ys = (np.arange(height * factor) + 0.5) / factor
    xs = (np.arange(width * factor) + 0.5) / factor
    return np.meshgrid(ys, xs, indexing="ij")


def _shape_mask(shape: str, y: np.ndarray, x: np.ndarray, cy: float, cx: float, extent: float) -> np.ndarray:
    """Boolean mask of a filled shape whose bounding box is ``extent`` wide, centred at (cy, cx)."""
    dy, dx = y - cy, x - cx
    half = extent / 2
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    if shape == "square":
        side = half * 0.9  # a bit smaller: a full-extent square would dwarf the circle in area
        return (np.abs(dx) <= side) & (np.abs(dy) <= side)
    if shape == "triangle":  # apex up, base down, height = 0.9 * width
        top, bottom = -0.45 * extent, 0.45 * extent
        frac = (dy - top) / (bottom - top)  # 0 at the apex, 1 at the base
        return (dy >= top) & (dy <= bottom) & (np.abs(dx) <= half * frac)
    raise ValueError(f"unknown 2-D shape {shape!r}")


def noisy_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Random mid-grey with a soft gradient and pixel noise -> (H, W, 3) float32 in 0..255."""
    y, x = _grid(height, width)
    level = rng.uniform(70, 180)
    gx, gy = rng.uniform(-25, 25, 2)
    grey = level + gx * (x / width - 0.5) + gy * (y / height - 0.5)
    img = grey[..., None] + rng.normal(0, 6, (height, width, 3))
    return img.astype(np.float32)


def shape_image(rng: np.random.Generator, colour: str, shape: str, size: int = 64) -> np.ndarray:
    """A filled shape 40-70 % of the image wide on a noisy grey background -> (size, size, 3) uint8."""
    extent = rng.uniform(0.4, 0.7) * size
    margin = extent / 2 + 1
    cy, cx = rng.uniform(margin, size - margin, 2)
    y, x = _grid(size, size, SUPERSAMPLE)
    mask = _shape_mask(shape, y, x, cy, cx, extent).astype(np.float32)
    alpha = mask.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))[..., None]  # (S, S, 1)
    fg = _jitter_colour(rng, COLOUR_RGB[colour]) + rng.normal(0, 5, (size, size, 3))
    img = alpha * fg + (1 - alpha) * noisy_background(rng, size, size)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------
# Video: a coloured ball on a static grey background.
# Square frames: the video loader's three spatial crops of a square frame coincide, so the 15 frames the model
# averages (5 clips x 3 crops) trace the ball's path alone. In a 4:3 frame the crops are shifted copies (by 5 of 32
# pixels here): every trace gets a horizontal smear and a still ball looks like a short horizontal movement.
VIDEO_W, VIDEO_H, VIDEO_FPS, VIDEO_SECONDS = 48, 48, 8, 3
# 0.6 Hz: the loader's five clip frames (t = 0, 0.5, 0.875, 1.25, 1.625 s at 8 fps) span about one period,
# so every moving ball visits its whole trajectory in the frames the model sees.
MOTION_HZ = 0.6


def ball_trajectory(rng: np.random.Generator, motion: str, n_frames: int, fps: float) -> np.ndarray:
    """Ball centre per frame -> (n_frames, 2) = (x, y) in pixels of a VIDEO_W x VIDEO_H frame."""
    t = np.arange(n_frames) / fps
    cx = VIDEO_W / 2 + rng.uniform(-4, 4)
    cy = VIDEO_H / 2 + rng.uniform(-4, 4)
    phase = 2 * np.pi * (rng.uniform(0, 1) + rng.choice([-1, 1]) * rng.uniform(0.95, 1.05) * MOTION_HZ * t)
    ax, ay = rng.uniform(12, 14), rng.uniform(12, 14)  # the same span both ways: only the direction differs
    r = rng.uniform(11, 13)
    if motion == "horizontally":
        xy = np.stack([cx + ax * np.sin(phase), np.full_like(t, cy)], 1)
    elif motion == "vertically":
        xy = np.stack([np.full_like(t, cx), cy + ay * np.sin(phase)], 1)
    elif motion == "in a circle":
        xy = np.stack([cx + r * np.cos(phase), cy + r * np.sin(phase)], 1)
    elif motion == "still":
        xy = np.stack([np.full_like(t, cx), np.full_like(t, cy)], 1)
    else:
        raise ValueError(f"unknown motion {motion!r}")
    return xy + rng.normal(0, 0.3, xy.shape)  # hand-held wobble, also for the still ball


def ball_frames(rng: np.random.Generator, colour: str, motion: str) -> np.ndarray:
    """All frames of a ball video -> (VIDEO_FPS * VIDEO_SECONDS, VIDEO_H, VIDEO_W, 3) uint8."""
    n = VIDEO_FPS * VIDEO_SECONDS
    xy = ball_trajectory(rng, motion, n, VIDEO_FPS)  # (n, 2)
    radius = rng.uniform(5.5, 7.0)
    bg = noisy_background(rng, VIDEO_H, VIDEO_W)  # static: cheap to encode
    fg = _jitter_colour(rng, COLOUR_RGB[colour])
    y, x = _grid(VIDEO_H, VIDEO_W)
    dist = np.sqrt((x[None] - xy[:, 0, None, None]) ** 2 + (y[None] - xy[:, 1, None, None]) ** 2)  # (n, H, W)
    alpha = np.clip(radius + 0.5 - dist, 0, 1)[..., None]  # 1-px antialiased edge
    frames = alpha * fg + (1 - alpha) * bg[None]
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """H.264 mp4 (yuv420p, no B-frames) via PyAV, reproducible bit for bit.

    x264's default lookahead / mb-tree made the output differ between runs now and then, even with one
    thread; ``tune=zerolatency`` (no lookahead, no B-frames) plus one thread and explicit pts did not in
    over a thousand encodes (tests/test_synth.py checks it).
    """
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "16", "preset": "fast", "tune": "zerolatency", "threads": "1"}
        for index, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts = index
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ---------------------------------------------------------------------------------------------------------
# 3-D scenes: an object on a ground plane (y = 0), sphere-traced signed distance functions.
def _sdf(shape: str, p: np.ndarray, size: float, yaw: float) -> np.ndarray:
    """Signed distance from points ``p`` (..., 3) in object coordinates (origin = object centre).

    ``size``: sphere radius, cube half-side / 0.8, cone base radius and half-height; ``yaw`` rotates about y.
    """
    if shape == "sphere":
        return np.linalg.norm(p, axis=-1) - size
    c, s = np.cos(yaw), np.sin(yaw)
    x, y, z = p[..., 0] * c - p[..., 2] * s, p[..., 1], p[..., 0] * s + p[..., 2] * c  # rotate about y
    if shape == "cube":
        q = np.abs(np.stack([x, y, z], -1)) - 0.8 * size  # a smaller half-side: similar bulk to the sphere
        outside = np.linalg.norm(np.maximum(q, 0), axis=-1)
        return outside + np.minimum(q.max(-1), 0)
    if shape == "cone":  # capped cone (Inigo Quilez), apex up: base radius = size, half-height = size
        h, r1 = size, size
        qx, qy = np.sqrt(x * x + z * z), y
        k2x, k2y = -r1, 2 * h  # (r2 - r1, 2h) with r2 = 0
        cax = qx - np.minimum(qx, np.where(qy < 0, r1, 0.0))
        cay = np.abs(qy) - h
        tt = np.clip(((0 - qx) * k2x + (h - qy) * k2y) / (k2x * k2x + k2y * k2y), 0, 1)
        cbx, cby = qx - 0 + k2x * tt, qy - h + k2y * tt
        sign = np.where((cbx < 0) & (cay < 0), -1.0, 1.0)
        return sign * np.sqrt(np.minimum(cax * cax + cay * cay, cbx * cbx + cby * cby))
    raise ValueError(f"unknown 3-D shape {shape!r}")


def render_scene(rng: np.random.Generator, shape: str, distance: float, rgb: tuple[int, int, int],
                 size: int = 64, factor: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one object on the ground seen from ``distance`` metres.

    Returns (rgb (S, S, 3) uint8 Lambert-shaded, depth (S, S) uint8 near = bright, normal (S, S, 3) uint8
    camera-space). Rendered at ``factor``x and box-filtered.
    """
    obj_size = rng.uniform(0.6, 0.75)  # see _sdf
    rest = 0.8 * obj_size if shape == "cube" else obj_size  # height of the centre above the ground
    centre = np.array([rng.uniform(-0.3, 0.3), rest, distance])
    yaw = rng.uniform(0, np.pi / 2)
    eye = np.array([0.0, rng.uniform(1.2, 1.7), 0.0])
    target = centre + np.array([rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15), 0.0])
    fwd = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    n = size * factor
    half = np.tan(np.radians(50) / 2)
    v, u = np.meshgrid(1 - (np.arange(n) + 0.5) / n * 2, (np.arange(n) + 0.5) / n * 2 - 1, indexing="ij")
    dirs = fwd + (u[..., None] * right + v[..., None] * up) * half  # (n, n, 3)
    dirs = (dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)).reshape(-1, 3)

    # Sphere tracing of the object, only for rays through its bounding sphere; the ground is analytic.
    origin = eye - centre
    b = dirs @ origin
    disc = b * b - (origin @ origin - (1.8 * obj_size) ** 2)  # bounding sphere: 1.8 x size holds all shapes
    root = np.sqrt(np.maximum(disc, 0))
    t_exit = -b + root
    idx = np.flatnonzero((disc > 0) & (t_exit > 0))
    t = np.full(len(dirs), np.inf)
    t[idx] = np.maximum(-b[idx] - root[idx], 0)
    hit_obj = np.zeros(len(dirs), bool)
    for _ in range(64):  # marching steps, vectorised over the rays still marching
        if not len(idx):
            break
        d = _sdf(shape, origin + t[idx, None] * dirs[idx], obj_size, yaw)
        t[idx] += d
        hit_obj[idx[d < 1e-3]] = True
        idx = idx[(d >= 1e-3) & (t[idx] < t_exit[idx])]
    t_ground = np.where(dirs[:, 1] < -1e-6, -eye[1] / np.minimum(dirs[:, 1], -1e-6), np.inf)
    hit_obj &= t < t_ground
    hit_ground = ~hit_obj & np.isfinite(t_ground)
    t_hit = np.where(hit_obj, t, t_ground)

    # Normals: SDF gradient by central differences on the object, +y on the ground.
    normal = np.zeros((len(dirs), 3))
    normal[hit_ground, 1] = 1.0
    p = origin + t[hit_obj, None] * dirs[hit_obj]
    grad = np.stack([_sdf(shape, p + e, obj_size, yaw) - _sdf(shape, p - e, obj_size, yaw)
                     for e in np.eye(3) * 1e-3], -1)
    normal[hit_obj] = grad / np.maximum(np.linalg.norm(grad, axis=-1, keepdims=True), 1e-9)

    light = np.array([rng.uniform(-0.6, 0.6), 1.0, -rng.uniform(0.3, 0.8)])
    light /= np.linalg.norm(light)
    lambert = 0.35 + 0.65 * np.clip(normal @ light, 0, None)
    ground_rgb = rng.uniform(95, 135) + rng.uniform(-8, 8, 3)
    sky_rgb = rng.uniform(180, 225) + rng.uniform(-10, 10, 3)
    albedo = np.where(hit_obj[:, None], _jitter_colour(rng, rgb, 12), ground_rgb)
    colour = np.where((hit_obj | hit_ground)[:, None], albedo * lambert[:, None], sky_rgb)

    z = np.where(hit_obj | hit_ground, t_hit * (dirs @ fwd), np.inf)  # z-depth along the optical axis
    grey = np.where(np.isfinite(z), 255 * np.clip(1 - (z - DEPTH_MIN) / (DEPTH_MAX - DEPTH_MIN), 0, 1), 0.0)
    cam = normal @ np.stack([right, up, -fwd], 1)  # world -> camera (x right, y up, z to the camera)
    enc = (cam + 1) / 2 * 255
    enc[~(hit_obj | hit_ground)] = 127.5

    def down(a: np.ndarray) -> np.ndarray:
        a = a.reshape(size, factor, size, factor, -1).mean(axis=(1, 3))
        return np.clip(np.round(a), 0, 255).astype(np.uint8)

    return down(colour), down(grey[:, None])[..., 0], down(enc)


def save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG")
