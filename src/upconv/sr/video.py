"""Upscale videos with PyAV: decode, upscale and encode frame batches as a stream.

Memory stays bounded: packets are demuxed one at a time, frames are upscaled ``batch`` at a
time and handed to the encoder, and audio packets are copied to the output as they come
(remuxed, never re-encoded). Each frame keeps its timestamp (``pts`` in the input stream's
time base), so constant and variable frame rates survive; the display rotation is copied.

Colour follows the image path: a luma network (1 channel) sees the video's own Y plane
(normalised from limited or full range to ``[0, 1]``), chroma (and alpha) planes are
resized bicubically in their own subsampling; an RGB network sees RGB frames. The output is
written to a temp file in the target folder and renamed when complete.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from .atomic import atomic_path
from .channels import colour_plan
from .pixels import resize_plane

if TYPE_CHECKING:
    import av
    from rich.progress import Progress

#: Encoder per output suffix when ``codec`` is not given.
DEFAULT_CODECS = {".webm": "libvpx-vp9"}
DEFAULT_CODEC = "libx264"
#: Constant-rate-factor default per encoder (visually near-lossless for x264 / x265).
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libsvtav1": 28}


class VideoError(ValueError):
    """A video that cannot be read, upscaled or written: the message says which and why."""


@dataclass(frozen=True)
class VideoOptions:
    """How videos are encoded and batched.

    ``codec``: an FFmpeg encoder (default ``libx264``; ``libvpx-vp9`` for ``.webm``);
    ``crf``: its constant rate factor (lower is better quality; default per codec, see
    :data:`DEFAULT_CRF`); ``preset``: its speed preset (x264/x265: ``ultrafast`` ...
    ``veryslow``); ``options``: further encoder options; ``batch``: frames per network call.
    """

    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    batch: int = 4


@dataclass
class VideoSummary:
    """What :func:`upscale_video` did: sizes, frames, rate and wall-clock time."""

    width: int
    height: int
    scale: int
    frames: int
    rate: Fraction | None
    codec: str
    audio_streams: int
    seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")

    def describe_input(self) -> str:
        rate = f", {float(self.rate):g} fps" if self.rate else ""
        return f"{self.width}×{self.height}, {self.frames} frames{rate}"

    def describe(self) -> str:
        audio = f", {self.audio_streams} audio stream(s) copied" if self.audio_streams else ""
        return (f"{self.scale * self.width}×{self.scale * self.height} {self.codec}{audio}; "
                f"{self.frames_per_second:.2f} frames/s")


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover - the video extra is missing
        raise VideoError("video needs PyAV: pip install 'upconv[video]'") from None
    return av


def is_planar_yuv(fmt: av.VideoFormat) -> bool:
    """Whether ``fmt`` keeps Y, U, V (and alpha) in planes of their own (yuv420p, yuv444p,
    yuv420p10le, yuva420p, ...), which the upscaler works on directly."""
    comps = fmt.components
    planes = [c.plane for c in comps]
    return (not fmt.is_rgb and not fmt.has_palette and not fmt.is_bayer and len(comps) >= 3
            and len(set(planes)) == len(planes) and comps[0].is_luma
            and not fmt.is_big_endian)


def plane_array(plane: av.video.plane.VideoPlane, dtype: np.dtype) -> np.ndarray:
    """A writable ``(height, width)`` view of a frame plane (its line padding cut off)."""
    itemsize = np.dtype(dtype).itemsize
    full = np.frombuffer(plane, dtype=dtype).reshape(plane.height, plane.line_size // itemsize)
    return full[:, : plane.width]


@dataclass(frozen=True)
class _Layout:
    """How frames are laid out: pixel format, bits, and the luma range."""

    pix_fmt: str
    bits: int
    full_range: bool

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.bits > 8 else np.uint8)

    @property
    def luma_span(self) -> tuple[float, float]:
        """``(black, white)`` code values of Y."""
        top = float(2**self.bits - 1)
        if self.full_range:
            return 0.0, top
        k = 2 ** (self.bits - 8)
        return 16.0 * k, 235.0 * k


def _layout(frame: av.VideoFrame) -> _Layout:
    av = _av()
    fmt = frame.format
    if not is_planar_yuv(fmt):
        deep = max(c.bits for c in fmt.components) > 8
        fmt = av.VideoFormat("yuv444p16le" if deep else "yuv444p")
    bits = max(c.bits for c in fmt.components)
    full = frame.color_range == 2 or fmt.name.startswith("yuvj")
    return _Layout(fmt.name, bits, full)


def _choose_pix_fmt(codec: av.Codec, layout: _Layout) -> str:
    names = [f.name for f in codec.video_formats or ()]
    if not names or layout.pix_fmt in names:
        return layout.pix_fmt
    return "yuv420p" if "yuv420p" in names else names[0]


def _upscale_luma(frames: list[av.VideoFrame], layout: _Layout, model: nn.Module,
                  tile: int | None, exact: bool) -> list[av.VideoFrame]:
    """Y through the network, the other planes bicubic, in ``layout``'s pixel format."""
    from .upscale import run_network

    av = _av()
    r, dtype = int(model.scale), layout.dtype
    top = float(2**layout.bits - 1)
    black, white = layout.luma_span
    frames = [f if f.format.name == layout.pix_fmt else f.reformat(format=layout.pix_fmt)
              for f in frames]
    y = np.stack([plane_array(f.planes[0], dtype) for f in frames]).astype(np.float32)
    y_up = run_network(model, ((y - black) / (white - black))[:, None], tile, exact)[:, 0]
    y_codes = np.clip(np.rint(y_up * (white - black) + black), 0, top).astype(dtype)
    out = []
    for i, src in enumerate(frames):
        dst = av.VideoFrame(src.width * r, src.height * r, layout.pix_fmt)
        plane_array(dst.planes[0], dtype)[...] = y_codes[i]
        for k in range(1, len(src.planes)):
            target = dst.planes[k]
            up = resize_plane(plane_array(src.planes[k], dtype).astype(np.float32),
                              (target.width, target.height))
            plane_array(target, dtype)[...] = np.clip(np.rint(up), 0, top).astype(dtype)
        out.append(dst)
    return out


def _upscale_rgb(frames: list[av.VideoFrame], layout: _Layout, model: nn.Module,
                 tile: int | None, exact: bool) -> list[av.VideoFrame]:
    """RGB frames through an RGB network (converted with each frame's own colour matrix)."""
    from .upscale import run_network

    av = _av()
    rgb_fmt, top = ("rgb48le", 65535.0) if layout.bits > 8 else ("rgb24", 255.0)
    rgb = np.stack([f.to_ndarray(format=rgb_fmt) for f in frames]).astype(np.float32) / top
    up = run_network(model, rgb.transpose(0, 3, 1, 2), tile, exact).transpose(0, 2, 3, 1)
    codes = np.clip(np.rint(up * top), 0, top).astype(np.uint16 if top > 255 else np.uint8)
    return [av.VideoFrame.from_ndarray(c, format=rgb_fmt).reformat(format=layout.pix_fmt)
            for c in codes]


@dataclass
class _Probe:
    layout: _Layout
    rotation: int
    colour: dict[str, int]


def _probe(src: Path) -> _Probe:
    """Decode the first frame: pixel format, range, rotation and colour tags."""
    with _open_input(src) as container:
        frame = next(container.decode(container.streams.video[0]), None)
    if frame is None:
        raise VideoError(f"{src}: the video stream has no frames")
    colour = {k: int(getattr(frame, k)) for k in
              ("color_range", "colorspace", "color_primaries", "color_trc")
              if isinstance(getattr(frame, k, None), int)}
    return _Probe(_layout(frame), int(frame.rotation or 0), colour)


@contextlib.contextmanager
def _open_input(src: Path) -> Iterator[av.container.InputContainer]:
    av = _av()
    try:
        container = av.open(str(src))
    except FileNotFoundError:
        raise VideoError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise VideoError(f"{src}: is a folder, not a video file") from None
    except av.FFmpegError as err:
        raise VideoError(f"{src}: not a video file FFmpeg can read ({err})") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{src}: has no video stream")
        if container.streams.video[0].codec_context is None:
            raise VideoError(f"{src}: no decoder for its video stream")
        yield container
    finally:
        container.close()


def upscale_video(src: str | os.PathLike[str], dst: str | os.PathLike[str], model: nn.Module,
                  *, tile: int | None = 256, exact: bool = True,
                  options: VideoOptions | None = None,
                  bar: Progress | None = None) -> VideoSummary:
    """Upscale the first video stream of ``src`` ×r into ``dst`` (same container type, from
    its suffix), copying every audio stream; returns a :class:`VideoSummary`.

    Raises :class:`VideoError` for unreadable files, missing or undecodable video streams,
    unknown encoders or an encoder that refuses the frames; ``dst`` is then left untouched.
    """
    av = _av()
    src, dst = Path(src), Path(dst)
    options = options or VideoOptions()
    if options.batch < 1:
        raise ValueError(f"batch must be >= 1, got {options.batch}")
    plan, r = colour_plan(model), int(model.scale)
    codec_name = options.codec or DEFAULT_CODECS.get(dst.suffix.lower(), DEFAULT_CODEC)
    try:
        codec = av.Codec(codec_name, "w")
    except (av.FFmpegError, ValueError):  # av.codec.codec.UnknownCodecError
        codec = None
    if codec is None or codec.type != "video":
        raise VideoError(f"unknown video encoder {codec_name!r}; for example libx264, "
                         "libx265, libvpx-vp9, libsvtav1, mpeg4, ffv1")
    try:
        probe = _probe(src)
    except av.FFmpegError as err:
        raise VideoError(f"{src}: cannot decode its video stream ({err})") from None
    start = time.perf_counter()
    try:
        with _open_input(src) as inp, atomic_path(dst) as tmp, \
                av.open(str(tmp), "w") as out:
            summary = _transcode(inp, out, probe, codec, options, model, plan, r, tile,
                                 exact, bar, src)
    except av.FFmpegError as err:
        raise VideoError(f"{src}: {err} (encoder {codec_name}, output {dst.name}); try "
                         "another --codec or output container") from None
    summary.seconds = time.perf_counter() - start
    return summary


def _transcode(inp, out, probe: _Probe, codec, options: VideoOptions, model: nn.Module,
               plan: str, r: int, tile: int | None, exact: bool, bar, src: Path
               ) -> VideoSummary:
    av = _av()
    vin = inp.streams.video[0]
    vin.thread_type = "AUTO"
    rate = vin.average_rate or vin.guessed_rate
    layout = probe.layout
    vout = out.add_stream(codec.name, rate=rate)
    vout.width, vout.height = vin.codec_context.width * r, vin.codec_context.height * r
    vout.pix_fmt = _choose_pix_fmt(codec, layout)
    vout.time_base = vin.time_base
    vout.codec_context.time_base = vin.time_base
    for key, value in probe.colour.items():
        with contextlib.suppress(AttributeError, ValueError, TypeError):
            setattr(vout.codec_context, key, value)
    if probe.rotation:
        vout.set_display_rotation(probe.rotation)
    vout.codec_context.options = _encoder_options(codec.name, options)
    audio = {a.index: out.add_stream_from_template(a) for a in inp.streams.audio}
    total = vin.frames or None
    task = bar.add_task(f"{src.name}", total=total, unit="frames") if bar else None
    upscale = _upscale_luma if plan == "luma" else _upscale_rgb
    frames_done = 0
    batch: list[av.VideoFrame] = []

    def flush() -> None:
        nonlocal frames_done
        if not batch:
            return
        for made, orig in zip(upscale(batch, layout, model, tile, exact), batch, strict=True):
            made.pts, made.time_base = orig.pts, orig.time_base
            out.mux(vout.encode(made))
        frames_done += len(batch)
        if bar is not None:
            bar.advance(task, len(batch))
        batch.clear()

    try:
        for packet in inp.demux(vin, *inp.streams.audio):
            if packet.stream.index in audio:
                if packet.dts is not None:
                    packet.stream = audio[packet.stream.index]
                    out.mux(packet)
                continue
            try:
                decoded = packet.decode()
            except av.FFmpegError as err:
                raise VideoError(f"{src}: corrupt video data after frame "
                                 f"{frames_done + len(batch)} ({err})") from None
            for frame in decoded:
                batch.append(frame)
                if len(batch) >= options.batch:
                    flush()
        flush()
        out.mux(vout.encode(None))
    finally:
        if bar is not None and task is not None:
            bar.remove_task(task)
    if frames_done == 0:
        raise VideoError(f"{src}: the video stream has no frames")
    return VideoSummary(vin.codec_context.width, vin.codec_context.height, r, frames_done,
                        Fraction(rate) if rate else None, codec.name, len(audio), 0.0)


def _encoder_options(codec: str, options: VideoOptions) -> dict[str, str]:
    """The encoder's private options: crf and preset where the encoder has them."""
    av = _av()
    known = {o.name for o in av.CodecContext.create(codec, "w").supported_options.private}
    opts: dict[str, str] = {}
    crf = options.crf if options.crf is not None else DEFAULT_CRF.get(codec)
    if crf is not None:
        if "crf" not in known:
            raise VideoError(f"encoder {codec} has no crf option; pass its own quality "
                             "options instead")
        opts["crf"] = str(crf)
        if codec.startswith("libvpx"):
            opts["b"] = "0"  # constant quality mode
    if options.preset is not None:
        if "preset" not in known:
            raise VideoError(f"encoder {codec} has no preset option")
        opts["preset"] = options.preset
    opts.update(options.options)
    return opts
