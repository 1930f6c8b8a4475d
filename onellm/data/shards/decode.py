"""Decode a shard member from its bytes in memory (no temporary file) into exactly the tensor the modality's file
loader gives for the same file, train-time augmentations included (same RNG draws in the same order).

The registry's loaders take paths. Those whose decoding library already reads file objects (image: PIL; fmri:
numpy) are called as they are, with the member as a named binary file object (:class:`Member`). The others open
files by name somewhere inside (``soundfile.read(str(path))``, ``decord.VideoReader(str(path))``,
``trimesh.load(path)``, ``Path(path)`` checks), so a byte-level decoder is registered for their load function
below: it reads the member with the same library through its file-object entry point and then runs the loader's
own functions below the file-opening step (crops, fbank, frame sampling, point resampling, IMU windows). A
modality registered by a plugin gets its loader called with a file object; if that loader needs a path it fails
with a clear error, and ``register_bytes_decoder`` adds a decoder for it.

``tests/test_shards.py`` holds every modality of the synthetic world equal, bit for bit, to its file loader.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..errors import InputError
from .members import Member

_DECODERS: dict[Callable, Callable] = {}


def register_bytes_decoder(load: Callable, decoder: Callable) -> None:
    """Decode inputs of every modality whose ``LoaderSpec.load`` is ``load`` with
    ``decoder(member, *, train, config, **options) -> tensor`` (path options arrive as :class:`Member`)."""
    _DECODERS[load] = decoder


def decode_input(modality: str, member: Member, options: dict[str, Any], *, train: bool, config) -> torch.Tensor:
    """One input from member bytes -> the model's float32 input tensor; :class:`InputError` naming the member."""
    from ...modalities import get

    _register_builtin()
    definition = get(modality)
    spec = definition.loader
    if member.suffix.lower() not in spec.extensions:
        raise InputError(member, f"unsupported file extension {member.suffix!r} for {definition.name} inputs")
    if member.nbytes == 0:
        raise InputError(member, "empty member (0 bytes)")
    decoder = _DECODERS.get(spec.load, spec.load)
    member.seek(0)
    for value in options.values():
        if isinstance(value, Member):
            value.seek(0)
    try:
        tensor = decoder(member, train=train, config=config, **options)
    except InputError:
        raise
    except (ValueError, RuntimeError, OSError, EOFError, IndexError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(member, f"cannot decode {definition.name} input from its bytes: {exc}") from exc
    return tensor.float()


# -- paired maps (depth, normal) ------------------------------------------------------------------------------
def _paired(member: Member, *, train: bool, config, rgb: Member | None = None) -> torch.Tensor:
    """``loaders.paired.load_paired`` on members (the same steps after opening the two images)."""
    from PIL import Image

    from ..loaders.image import EXTENSIONS, apply_crop, eval_crop, open_rgb, random_crop_params, to_clip_tensor
    from ..loaders.paired import _open_map

    size = config.vision.image_size
    if not isinstance(rgb, Member):
        raise InputError(member, "the paired RGB image is required for a depth/normal map (member rgb.<ext>)")
    if rgb.suffix.lower() not in EXTENSIONS:
        raise InputError(rgb, f"unsupported RGB image extension {rgb.suffix!r}; supported: {', '.join(EXTENSIONS)}")
    if rgb.nbytes == 0:
        raise InputError(rgb, "empty member (0 bytes)")
    image = open_rgb(rgb)
    x_image = _open_map(member)
    if x_image.size != image.size:
        x_image = x_image.resize(image.size, Image.Resampling.BICUBIC)
    if train:
        params = random_crop_params(image)  # one draw shared by both images
        pair = [apply_crop(im, params, size) for im in (image, x_image)]
    else:
        pair = [eval_crop(im, size) for im in (image, x_image)]
    return torch.stack([to_clip_tensor(im) for im in pair])  # (2, 3, S, S)


# -- audio ----------------------------------------------------------------------------------------------------
def _waveform(member: Member) -> tuple[torch.Tensor, int]:
    """``loaders.audio.read_waveform`` on a member: soundfile, then PyAV, both through file objects."""
    import soundfile

    errors = []
    try:
        member.seek(0)
        data, rate = soundfile.read(member, dtype="float32", always_2d=True)  # (T, C)
        return torch.from_numpy(np.ascontiguousarray(data.T, dtype=np.float32)), int(rate)
    except Exception as exc:
        errors.append(f"soundfile: {str(exc).strip() or type(exc).__name__}")
    try:
        import av

        member.seek(0)
        with av.open(member) as container:
            if not container.streams.audio:
                raise ValueError("no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp")
            chunks = [f.to_ndarray() for frame in container.decode(stream) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray() for f in resampler.resample(None)]
            rate = int(stream.rate or stream.codec_context.sample_rate)
        data = np.concatenate(chunks, axis=1) if chunks else np.zeros((1, 0), np.float32)  # (C, T)
        return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), rate
    except Exception as exc:
        errors.append(f"PyAV: {str(exc).strip() or type(exc).__name__}")
    raise InputError(member, "cannot decode audio: " + "; ".join(errors))


def _audio(member: Member, *, train: bool, config) -> torch.Tensor:
    """``loaders.audio.load_audio`` after its ``read_waveform``."""
    from ..audio_dsp import frequency_mask, resample, time_mask
    from ..loaders.audio import (FBANK_MEAN, FBANK_STD, SAMPLE_RATE, WINDOW_SAMPLES, fbank_features,
                                 scaled_mask_widths)

    mel_bins, frames = config.inputs.audio.mel_bins, config.inputs.audio.frames
    waveform, rate = _waveform(member)  # (C, T)
    if waveform.numel() == 0:
        raise InputError(member, "audio is empty (no samples)")
    if not torch.isfinite(waveform).all():
        raise InputError(member, "audio contains NaN or infinite samples")
    if rate <= 0:
        raise InputError(member, f"invalid sample rate {rate}")
    if rate != SAMPLE_RATE:
        waveform = resample(waveform, rate, SAMPLE_RATE)
    if waveform.shape[1] < WINDOW_SAMPLES:
        raise InputError(member, f"audio too short: {waveform.shape[1]} samples at 16 kHz, "
                                 f"need at least {WINDOW_SAMPLES} (one 25 ms frame)")
    waveform = waveform - waveform.mean()
    fbank = fbank_features(waveform, mel_bins)  # (n_frames, mel_bins)
    pad = frames - fbank.shape[0]
    fbank = torch.nn.functional.pad(fbank, (0, 0, 0, pad)) if pad > 0 else fbank[:frames]  # (frames, mel_bins)
    spec = fbank.T.unsqueeze(0)  # (1, mel_bins, frames)
    if train:
        freq_width, time_width = scaled_mask_widths(mel_bins, frames)
        spec = frequency_mask(spec, freq_width)
        spec = time_mask(spec, time_width)
    return ((spec - FBANK_MEAN) / (FBANK_STD * 2)).contiguous()


# -- video ----------------------------------------------------------------------------------------------------
def _frames_decord(member: Member, clips: int) -> np.ndarray:
    import decord

    from ..loaders.video import _check_meta, clip_frame_indices

    member.seek(0)
    reader = decord.VideoReader(member, ctx=decord.cpu(0))  # decord reads file objects from memory
    n_frames, fps = len(reader), float(reader.get_avg_fps())
    _check_meta(member, n_frames, fps)
    return reader.get_batch(clip_frame_indices(n_frames, fps, clips)).asnumpy()


def _frames_av(member: Member, clips: int) -> np.ndarray:
    import av

    from ..loaders.video import _check_meta, clip_frame_indices

    member.seek(0)
    with av.open(member) as container:
        if not container.streams.video:
            raise InputError(member, "video has no frames (no video stream)")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        n_frames = stream.frames
        if not n_frames:
            with av.open(Member(member.getvalue(), member.name, member.ext)) as counting:
                n_frames = sum(1 for packet in counting.demux(video=0) if packet.size > 0)
        _check_meta(member, n_frames, fps)
        wanted = clip_frame_indices(n_frames, fps, clips)
        wanted_set, stop = set(wanted), max(wanted)
        frames: dict[int, np.ndarray] = {}
        last = None
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted_set:
                frames[index] = last = frame.to_ndarray(format="rgb24")
            if index >= stop:
                break
    if last is None:
        raise InputError(member, "video has no decodable frames")
    return np.stack([frames.get(i, last) for i in wanted])


def _video(member: Member, *, train: bool, config, backend: str = "auto") -> torch.Tensor:
    """``loaders.video.load_video`` with its two decoders reading the member's bytes."""
    from ..loaders.image import clip_normalize
    from ..loaders.video import short_side_scale, spatial_crops

    if backend not in ("auto", "decord", "av"):
        raise ValueError(f"unknown video backend {backend!r}; expected 'auto', 'decord' or 'av'")
    size, clips, crops = config.vision.image_size, config.inputs.video.clips, config.inputs.video.crops
    errors, raw = [], None
    for name, fn in (("decord", _frames_decord), ("av", _frames_av)):
        if backend not in ("auto", name):
            continue
        try:
            raw = fn(member, clips)
            break
        except InputError:
            raise
        except ImportError as exc:
            errors.append(f"{name} not available ({exc})")
        except Exception as exc:
            text = str(exc).strip()
            errors.append(f"{name}: {text.splitlines()[0] if text else type(exc).__name__}")
    if raw is None:
        raise InputError(member, "cannot decode video: " + "; ".join(errors))
    frames = torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255.0  # (clips, 3, H, W)
    frames = clip_normalize(short_side_scale(frames, size))
    return spatial_crops(frames, size, crops).contiguous()


# -- point clouds ---------------------------------------------------------------------------------------------
def _mesh_cloud(member: Member, num_points: int, seed: int) -> np.ndarray:
    """``loaders.point._sample_mesh`` with trimesh reading the member (``file_type`` from its extension)."""
    import trimesh

    from ..loaders.point import MISSING_COLOR, _rgb01, _vertex_cloud

    try:
        member.seek(0)
        geom = trimesh.load(member, file_type=member.suffix.lstrip(".").lower())
        if isinstance(geom, trimesh.Scene):
            if not geom.geometry:
                raise ValueError("scene holds no geometry")
            geom = geom.to_mesh()
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
        elif kind == "texture":
            rgb = _rgb01(np.broadcast_to(geom.visual.material.main_color, (num_points, 4)))
        elif kind == "vertex":
            corners = geom.visual.vertex_colors[geom.faces[face_index]].astype(np.float32)  # (M, 3, 4)
            rgb = _rgb01(np.einsum("mk,mkc->mc", rest[-1], corners))
        else:
            rgb = np.full((num_points, 3), MISSING_COLOR, np.float32)
        return np.concatenate([np.asarray(points, np.float32), rgb], axis=1)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(member, f"cannot load mesh: {exc}") from exc


def _point(member: Member, *, train: bool, config) -> torch.Tensor:
    """``loaders.point.load_point`` on a member (arrays through numpy / torch file objects, meshes through
    trimesh's)."""
    from ..loaders.point import EVAL_SEED, MESH_EXTENSIONS, _read_array, _with_color, pc_norm, resample_points

    num_points = config.inputs.point.num_points
    if member.suffix.lower() in MESH_EXTENSIONS:
        seed = int(torch.randint(2**31 - 1, ()).item()) if train else EVAL_SEED
        cloud = _mesh_cloud(member, num_points, seed)
    else:
        cloud = _read_array(member)  # np.load / torch.load read file objects; .suffix picks which
    cloud = torch.from_numpy(_with_color(member, cloud))  # (N, 6)
    return pc_norm(resample_points(cloud, num_points, train)).contiguous()


# -- IMU ------------------------------------------------------------------------------------------------------
def _imu(member: Member, *, train: bool, config, timestamps: Member | None = None, start: float | None = None,
         end: float | None = None, rate: int | None = None) -> torch.Tensor:
    """``loaders.imu.load_imu`` on members (the signal and its timestamps)."""
    from ..audio_dsp import resample
    from ..loaders.imu import _read_signal, _window_by_rate, _window_by_timestamps

    imu = config.inputs.imu
    length, target_rate = imu.length, imu.rate
    if start is None and end is not None:
        raise InputError(member, "an IMU window needs 'start' when 'end' is given")
    if start is not None:
        start = float(start)
        end = start + length / target_rate if end is None else float(end)
        if end <= start:
            raise InputError(member, f"IMU window end ({end} s) must be after its start ({start} s)")
    signal = _read_signal(member, imu.channels)  # (C, T)
    if timestamps is not None:
        if rate is not None:
            raise InputError(member, "give either 'timestamps' or 'rate': with timestamps the rate is measured")
        window, measured = _window_by_timestamps(member, timestamps, signal, start, end)
    else:
        measured = target_rate if rate is None else int(rate)
        if measured <= 0 or (rate is not None and float(rate) != measured):
            raise InputError(member, f"IMU rate must be a positive integer number of Hz, got {rate}")
        window = _window_by_rate(member, signal, start, end, measured)
    x = torch.from_numpy(np.ascontiguousarray(window))  # (C, T')
    if x.dtype not in (torch.float32, torch.float64):
        x = x.double()
    if measured != target_rate:
        x = resample(x, measured, target_rate)
    pad = length - x.shape[1]
    x = torch.nn.functional.pad(x, (0, pad)) if pad > 0 else x[:, :length]  # (C, length)
    return x.float().contiguous()


_BUILTIN = False


def _register_builtin() -> None:
    """Byte decoders for the built-in loaders that open files by name (keyed by the registry's load function)."""
    global _BUILTIN
    if _BUILTIN:
        return
    from ...modalities import audio, imu, paired_map, point, video

    for load, decoder in ((paired_map.load, _paired), (audio.load, _audio), (video.load, _video),
                          (point.load, _point), (imu.load, _imu)):
        _DECODERS.setdefault(load, decoder)
    _BUILTIN = True


__all__ = ["decode_input", "register_bytes_decoder"]
