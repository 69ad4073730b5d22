"""Pixel conventions and video files.

Inside the core, video is a float tensor (B, 3, T, H, W) in [-1, 1]; frames on disk and in the world
renderer are uint8 arrays (T, H, W, 3) RGB; ComfyUI's IMAGE is float (T, H, W, 3) in [0, 1].
"""

from __future__ import annotations

import fractions
import os
import re
from pathlib import Path

import av
import av.filter
import cv2
import numpy as np
import torch
from einops import rearrange

from .files import atomic_write, unique_path  # noqa: F401  (unique_path is part of this module's API)

# ---------------------------------------------------------------------------------------------
# Pixel conventions
# ---------------------------------------------------------------------------------------------

def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, 3) RGB -> float (3, T, H, W) in [-1, 1]."""
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {tuple(x.shape)}")
    return rearrange(x.float() / 127.5 - 1.0, "t h w c -> c t h w")


def tensor_to_frames(video: torch.Tensor) -> np.ndarray:
    """float (3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3) RGB."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"video must have shape (3, T, H, W), got {tuple(video.shape)}")
    x = ((video.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return rearrange(x, "c t h w -> t h w c").cpu().numpy()


# ---------------------------------------------------------------------------------------------
# Video files: formats
# ---------------------------------------------------------------------------------------------
# Reading: containers PyAV decodes (mp4, webm, ...), animated webp through opencv (FFmpeg's webp
# decoder has no animation support), single images, and folders of numbered images.
# Writing: browser-playable H.264 mp4 (yuv420p, faststart), animated webp and gif, through PyAV.

VIDEO_READ_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif")
ANIMATION_READ_EXTS = (".webp", ".apng")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
READ_EXTS = VIDEO_READ_EXTS + ANIMATION_READ_EXTS + IMAGE_EXTS
WRITE_EXTS = (".mp4", ".webp", ".gif")
IMAGE_WRITE_EXTS = (".png", ".jpg", ".jpeg", ".webp")
DEFAULT_FPS = 8.0  # frames per second given to still images and image folders


class VideoIOError(ValueError):
    """A video file that cannot be read or written (unknown format, corrupt data, bad frames)."""


def _ext(path: Path) -> str:
    return path.suffix.lower()


# ---------------------------------------------------------------------------------------------
# Output paths: never overwrite, write atomically
# ---------------------------------------------------------------------------------------------

def _check_folder(path: Path) -> None:
    """Create the output folder if needed; raise a clear error if it cannot hold a new file."""
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cannot write {path.name}: {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PermissionError(f"cannot create the output folder {folder}: {e.strerror or e}") from None
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"the output folder {folder} is not writable")


def _atomic_write(path: Path, overwrite: bool, write_fn) -> Path:
    """``files.atomic_write`` after checking the folder can hold a new file."""
    _check_folder(path)
    return atomic_write(path, write_fn, overwrite=overwrite)


def _check_frames(frames, name: str = "frames") -> np.ndarray:
    """uint8 (T, H, W, 3) as a contiguous numpy array, or a clear error."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise VideoIOError(f"{name} must be uint8 RGB of shape (T, H, W, 3) with T >= 1, "
                           f"got shape {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        raise VideoIOError(f"{name} must be uint8 (0..255), got {frames.dtype}; "
                           "convert float video with tensor_to_frames")
    return np.ascontiguousarray(frames)


# Frame rates each written format can store (frames per second, inclusive). mp4 and webp: rates are
# kept as fractions with denominators up to 1001 (webp stores whole-millisecond frame durations, up to
# 1000 fps); gif stores whole-centisecond delays, and browsers play delays under 2 cs at 10 fps.
FPS_LIMITS = {".mp4": (0.001, 1000.0), ".webp": (0.001, 1000.0), ".gif": (0.002, 50.0)}


def check_fps(fps: float, ext: str = ".mp4") -> fractions.Fraction:
    """The rate ``fps`` as the fraction written to a ``ext`` file; a VideoIOError names the format's
    allowed range (``FPS_LIMITS``) when the rate is not a finite number the format can store."""
    lo, hi = FPS_LIMITS.get(ext.lower(), (0.001, 1000.0))
    ok = isinstance(fps, (int, float)) and not isinstance(fps, bool) and np.isfinite(fps)
    if not ok or not lo <= fps <= hi:
        raise VideoIOError(f"fps must be a number in [{lo:g}, {hi:g}] for a {ext} file "
                           f"(what the format can store), got {fps!r}")
    return fractions.Fraction(fps).limit_denominator(1001)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def pad_to_even(frames: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sizes: an odd height or width gets one more row / column,
    a copy of the last one (edge padding), so nothing of the picture is lost. (T, H, W, 3) -> (T, H', W', 3)."""
    _, h, w, _ = frames.shape
    if h % 2 == 0 and w % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _encode(tmp: Path, fmt: str, codec: str, pix_fmt: str, frames, rate, *,
            options: dict, container_options: dict, metadata: dict | None = None) -> None:
    """Encode an iterable of av.VideoFrame / uint8 (H, W, 3) arrays into ``tmp`` with PyAV."""
    with av.open(str(tmp), "w", format=fmt, options=container_options) as out:
        out.metadata.update(metadata or {})
        stream = out.add_stream(codec, rate=rate)
        stream.pix_fmt = pix_fmt
        stream.options = options
        for i, f in enumerate(frames):
            frame = f if isinstance(f, av.VideoFrame) else av.VideoFrame.from_ndarray(f, format="rgb24")
            if i == 0:
                stream.width, stream.height = frame.width, frame.height
            frame.pts = None
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _gif_palette_frames(frames: np.ndarray, rate: fractions.Fraction) -> list:
    """Quantise RGB frames to one shared 256-colour palette with FFmpeg's palettegen/paletteuse
    (far better colours than a fixed palette). Returns pal8 av.VideoFrames."""
    t, h, w, _ = frames.shape
    graph = av.filter.Graph()
    src = graph.add_buffer(width=w, height=h, format="rgb24", time_base=1 / rate)
    split, sink = graph.add("split"), graph.add("buffersink")
    palettegen = graph.add("palettegen", "stats_mode=full")
    paletteuse = graph.add("paletteuse", "dither=sierra2_4a")
    src.link_to(split)
    split.link_to(palettegen, 0, 0)
    split.link_to(paletteuse, 1, 0)
    palettegen.link_to(paletteuse, 0, 1)
    paletteuse.link_to(sink)
    graph.configure()
    for i, f in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(f, format="rgb24")
        frame.pts, frame.time_base = i, 1 / rate
        graph.push(frame)
    graph.push(None)
    out = []
    while True:
        try:
            out.append(graph.pull())
        except (av.error.BlockingIOError, av.error.EOFError):
            return out


def write_video(path: str | os.PathLike, frames, fps: float = DEFAULT_FPS, *, overwrite: bool = False,
                crf: int = 16, lossless: bool = False, metadata: dict[str, str] | None = None) -> Path:
    """Write uint8 frames (T, H, W, 3) RGB to ``path`` and return the path actually written.

    Format by extension: ``.mp4`` = H.264 (libx264, yuv420p, faststart: plays in every browser; odd
    sizes are edge-padded to even, see ``pad_to_even``; ``crf`` sets the quality, 0 = lossless),
    ``.webp`` = animated WebP (``lossless`` or quality 90), ``.gif`` = GIF with a palette made for
    the clip. All loop forever where the format can loop. The file is written to a temporary name
    and moved into place; an existing file is never replaced unless ``overwrite``: the video then
    gets a new name from ``unique_path``. ``metadata``: text tags stored in an mp4 (as ComfyUI stores
    its "prompt" and "workflow" JSON); other formats ignore them.
    """
    path = Path(path)
    ext = _ext(path)
    if ext not in WRITE_EXTS:
        raise VideoIOError(f"cannot write {path.name!r}: unknown video extension {ext or '(none)'!r}; "
                           f"allowed are {', '.join(WRITE_EXTS)}")
    frames = _check_frames(frames)
    rate = check_fps(fps, ext)
    if not 0 <= int(crf) <= 51:
        raise VideoIOError(f"crf must be in 0..51, got {crf}")

    def write(tmp: Path) -> None:
        if ext == ".mp4":
            flags = "+faststart+use_metadata_tags" if metadata else "+faststart"
            _encode(tmp, "mp4", "libx264", "yuv420p", pad_to_even(frames), rate,
                    options={"crf": str(int(crf)), "preset": "medium"},
                    container_options={"movflags": flags}, metadata=metadata)
        elif ext == ".webp":
            opts = {"lossless": "1"} if lossless else {"quality": "90"}
            _encode(tmp, "webp", "libwebp_anim", "yuv420p" if not lossless else "bgra", frames, rate,
                    options=opts, container_options={"loop": "0"})
        else:
            _encode(tmp, "gif", "gif", "pal8", _gif_palette_frames(frames, rate), rate,
                    options={}, container_options={"loop": "0"})

    return _atomic_write(path, overwrite, write)


def write_image(path: str | os.PathLike, frame, *, overwrite: bool = False) -> Path:
    """Write one uint8 RGB frame (H, W, 3) to ``path`` (.png, or .jpg / .webp) and return the path
    written; never replaces an existing file unless ``overwrite`` (see ``write_video``)."""
    path = Path(path)
    ext = _ext(path)
    if ext not in IMAGE_WRITE_EXTS:
        raise VideoIOError(f"cannot write {path.name!r}: unknown image extension {ext or '(none)'!r}; "
                           f"allowed are {', '.join(IMAGE_WRITE_EXTS)}")
    frame = _check_frames(np.asarray(frame)[None], "frame")[0]

    def write(tmp: Path) -> None:
        ok, buf = cv2.imencode(ext, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not ok:
            raise VideoIOError(f"opencv could not encode {path.name}")
        tmp.write_bytes(buf.tobytes())

    return _atomic_write(path, overwrite, write)


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

def _to_rgb(img: np.ndarray) -> np.ndarray:
    """An opencv image (grey, BGR or BGRA; 8 or 16 bit) -> uint8 (H, W, 3) RGB."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(img, code)


def _stack(frames: list[np.ndarray], source: Path) -> np.ndarray:
    if not frames:
        raise VideoIOError(f"{source} holds no frames")
    sizes = {f.shape for f in frames}
    if len(sizes) > 1:
        raise VideoIOError(f"the frames of {source} differ in size: {sorted(sizes)}")
    return np.stack(frames)


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise VideoIOError(f"cannot decode the image {path} (corrupt or not an image)")
    return _to_rgb(img)


def _natural_key(path: Path):
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", path.name)]


def _read_folder(folder: Path) -> tuple[np.ndarray, float]:
    files = sorted((p for p in folder.iterdir() if _ext(p) in IMAGE_EXTS and not p.name.startswith(".")),
                   key=_natural_key)
    if not files:
        raise VideoIOError(f"the folder {folder} holds no images ({', '.join(IMAGE_EXTS)})")
    return _stack([_read_image(p) for p in files], folder), DEFAULT_FPS


def _tidy_fps(fps: float) -> float:
    """Animated webp / gif store per-frame delays in whole milliseconds / centiseconds, so 12 fps
    comes back as 11.99 or 12.02: snap rates within 2% of a whole number to that number."""
    return float(round(fps)) if fps >= 1 and abs(fps - round(fps)) < 0.02 * fps else fps


def _read_animation(path: Path) -> tuple[np.ndarray, float]:
    """Animated (or still) webp / apng through opencv."""
    ok, anim = cv2.imreadanimation(str(path))
    if not ok or not anim.frames:
        return _read_image(path)[None], DEFAULT_FPS
    durations = [d for d in anim.durations if d > 0]
    fps = 1000.0 / float(np.mean(durations)) if durations else DEFAULT_FPS
    return _stack([_to_rgb(f) for f in anim.frames], path), _tidy_fps(fps)


def _read_container(path: Path, max_frames: int | None) -> tuple[np.ndarray, float]:
    """Any container FFmpeg decodes, first video stream, through PyAV."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoIOError(f"{path} has no video stream")
            stream = container.streams.video[0]
            rate = stream.guessed_rate or stream.average_rate
            frames, durations = [], []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                durations.append(float(frame.duration * frame.time_base) if frame.duration and frame.time_base
                                 else 0.0)
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.error.FFmpegError as e:
        raise VideoIOError(f"cannot decode the video {path}: {e}") from None
    fps = float(rate) if rate else DEFAULT_FPS
    if _ext(path) != ".gif":
        return _stack(frames, path), fps
    if all(d > 0 for d in durations):        # gif: FFmpeg's guessed rate is wrong for delays over 1 s
        fps = len(durations) / sum(durations)
    return _stack(frames, path), _tidy_fps(fps)


def read_video(path: str | os.PathLike, *, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Read a video, an animation, a single image or a folder of images.

    Returns ``(frames uint8 (T, H, W, 3) RGB, fps)``. A single image is a 1-frame video; a folder is
    read as a sequence of its images in natural order (``f2.png`` before ``f10.png``). Images and
    folders get ``DEFAULT_FPS``. ``max_frames`` stops after that many frames.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such video file or folder: {path}")
    if path.is_dir():
        frames, fps = _read_folder(path)
    else:
        ext = _ext(path)
        if ext in IMAGE_EXTS:
            frames, fps = _read_image(path)[None], DEFAULT_FPS
        elif ext in ANIMATION_READ_EXTS:
            frames, fps = _read_animation(path)
        elif ext in VIDEO_READ_EXTS:
            frames, fps = _read_container(path, max_frames)
        else:
            raise VideoIOError(f"cannot read {path.name!r}: unknown extension {ext or '(none)'!r}; "
                               f"allowed are {', '.join(READ_EXTS)} or a folder of images")
    return (frames[:max_frames] if max_frames is not None else frames), fps


def probe_video(path: str | os.PathLike) -> tuple[int | None, int, int] | None:
    """``(frames, height, width)`` of what ``read_video`` would return, from the container's header
    (no frame is decoded; a folder decodes its first image): ``frames`` is None when the file does not
    tell (e.g. animated webp). None when the size cannot be told without decoding."""
    path = Path(path)
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if _ext(p) in IMAGE_EXTS and not p.name.startswith(".")),
                       key=_natural_key)
        img = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED) if files else None
        return None if img is None else (len(files), img.shape[0], img.shape[1])
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            h, w = stream.codec_context.height, stream.codec_context.width
            frames = stream.frames or None
            rate = stream.guessed_rate or stream.average_rate
            seconds = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                       else container.duration / av.time_base if container.duration else None)
            if frames is None and seconds and rate:
                frames = max(1, round(seconds * float(rate)))
    except (av.error.FFmpegError, ValueError):
        return None
    if _ext(path) in IMAGE_EXTS:
        frames = 1
    elif _ext(path) in ANIMATION_READ_EXTS:
        frames = None
    return (frames, h, w) if h and w else None
