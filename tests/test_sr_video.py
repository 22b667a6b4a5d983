"""Videos through PyAV: frames, timing and audio survive; planes are upscaled as images are;
memory stays bounded; bad input gets a clear message and leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from upconv.cli import main
from upconv.sr import load_pretrained
from upconv.sr.video import VideoError, VideoOptions, _Layout, _upscale_luma, upscale_video

SRC = Path(__file__).resolve().parents[1] / "src"


def make_clip(path: Path, seconds: float = 2.0, size: tuple[int, int] = (64, 48),
              fps: int = 10, audio: bool = True, preset: str = "medium",
              rotation: int = 0) -> Path:
    """A synthetic H.264 clip (moving gradients) with a 440 Hz AAC tone, made by PyAV."""
    w, h = size
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.codec_context.options = {"preset": preset}
        if rotation:
            video.set_display_rotation(rotation)
        tone = out.add_stream("aac", rate=8000, layout="mono") if audio else None
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(round(seconds * fps)):
            img = np.stack([(xx * 4 + i * 8) % 256, (yy * 5) % 256, (xx + yy + 3 * i) % 256],
                           -1).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if tone is not None:
            t = np.arange(round(seconds * 8000)) / 8000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for k in range(0, len(samples), 1024):
                frame = av.AudioFrame.from_ndarray(samples[None, k:k + 1024], format="fltp",
                                                   layout="mono")
                frame.sample_rate, frame.pts = 8000, k
                out.mux(tone.encode(frame))
            out.mux(tone.encode(None))
    return path


def _streams(path: Path) -> dict:
    """Frame times, sizes, duration and audio packets of a file, as PyAV reads them."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        audio = [(p.pts, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.size] \
            if c.streams.audio else []
        c.seek(0)
        frames = [(f.time, f.width, f.height) for f in c.decode(v)]
        return {"frames": frames, "duration": c.duration / 1e6,
                "rate": v.average_rate, "audio": audio,
                "audio_codec": c.streams.audio[0].codec_context.name if audio else None}


def test_clip_round_trip_keeps_frames_timing_and_audio(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4")
    result = CliRunner().invoke(main, ["upscale", str(clip), "--scale", "2", "-o",
                                       str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "20 frames" in result.output and "frames/s" in result.output
    out = tmp_path / "out" / "clip-x2.mp4"
    assert sorted(os.listdir(tmp_path / "out")) == ["clip-x2.mp4"]  # no temp file left
    before, after = _streams(clip), _streams(out)
    assert len(after["frames"]) == len(before["frames"]) == 20
    assert [t for t, *_ in after["frames"]] == pytest.approx([t for t, *_ in before["frames"]])
    assert {(w, h) for _, w, h in after["frames"]} == {(128, 96)}
    assert after["duration"] == pytest.approx(before["duration"], abs=0.1) == 2.0
    assert after["rate"] == before["rate"] == 10
    # the audio stream is remuxed, not re-encoded: the same packets, byte for byte
    assert after["audio_codec"] == "aac" and after["audio"] == before["audio"]
    assert len(after["audio"]) >= 15


def test_luma_plane_through_the_network_chroma_bicubic():
    model = load_pretrained("espcn-x2")
    rng = np.random.default_rng(3)
    frame = av.VideoFrame(22, 14, "yuv420p")
    planes = [rng.integers(16, 236, (14, 22)), rng.integers(16, 241, (7, 11)),
              rng.integers(16, 241, (7, 11))]
    for plane, values in zip(frame.planes, planes, strict=True):
        padded = np.zeros((plane.height, plane.line_size), np.uint8)
        padded[:, : plane.width] = values
        plane.update(padded.tobytes())
    [out] = _upscale_luma([frame], _Layout("yuv420p", 8, False), model, None, True)
    assert (out.width, out.height, out.format.name) == (44, 28, "yuv420p")
    y = np.frombuffer(out.planes[0], np.uint8).reshape(28, -1)[:, :44]
    with torch.no_grad():  # limited range: 16 is black, 235 white
        net = model(torch.from_numpy((planes[0] - 16) / np.float32(219))[None, None].float())
    want = np.clip(net[0, 0].numpy() * 219 + 16, 0, 255)
    assert np.abs(y - want).max() <= 0.5 + 1e-3
    u = np.frombuffer(out.planes[1], np.uint8).reshape(14, -1)[:, :22]
    bicubic = Image.fromarray(planes[1].astype(np.float32)).resize((22, 14),
                                                                   Image.Resampling.BICUBIC)
    assert np.abs(u - np.clip(np.asarray(bicubic), 0, 255)).max() <= 0.5 + 1e-3


def test_rgb_network_on_video_and_rotation_kept(tmp_path):
    from test_sr_imageio import TinyRGB

    clip = make_clip(tmp_path / "c.mp4", seconds=0.5, audio=False, rotation=90)
    summary = upscale_video(clip, tmp_path / "c-x2.mp4", TinyRGB().eval(),
                            options=VideoOptions(codec="libx264", crf=30, batch=3))
    assert (summary.frames, summary.width, summary.scale) == (5, 64, 2)
    assert len(_streams(tmp_path / "c-x2.mp4")["frames"]) == 5
    with av.open(str(tmp_path / "c-x2.mp4")) as c:
        assert next(c.decode(video=0)).rotation == 90  # the display matrix is copied


def test_bad_videos_are_reported_and_leave_nothing(tmp_path):
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "cut.mp4").write_bytes(make_clip(tmp_path / "whole.mp4").read_bytes()[:3000])
    with av.open(str(tmp_path / "sound.m4a"), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    os.rename(tmp_path / "sound.m4a", tmp_path / "sound.mp4")
    outdir = tmp_path / "out"
    result = CliRunner().invoke(main, ["upscale", str(tmp_path / "text.mp4"),
                                       str(tmp_path / "sound.mp4"), str(tmp_path / "cut.mp4"),
                                       "--scale", "2", "-o", str(outdir)])
    assert result.exit_code != 0
    assert "text.mp4: not a video file FFmpeg can read" in result.output
    assert "sound.mp4: has no video stream" in result.output
    assert "cut.mp4" in result.output and "3 of 3 input(s) failed" in result.output
    assert os.listdir(outdir) == []  # no output, no temp file
    whole = tmp_path / "whole.mp4"
    for args, message in ((["--codec", "nonesuch"], "unknown video encoder 'nonesuch'"),
                          (["--codec", "mpeg4", "--crf", "20"], "mpeg4 has no crf option")):
        result = CliRunner().invoke(main, ["upscale", str(whole), "--scale", "2", "-o",
                                           str(outdir), *args])
        assert result.exit_code != 0 and message in result.output, result.output
    assert os.listdir(outdir) == []
    with pytest.raises(VideoError, match="no such file"):
        upscale_video(tmp_path / "missing.mp4", outdir / "x.mp4", load_pretrained("espcn-x2"))


_CHILD = textwrap.dedent("""
    import json, resource, sys
    import torch
    from upconv.sr.video import VideoOptions, upscale_video

    class Tiny(torch.nn.Module):  # a cheap luma x2 network: the pipeline is what is measured
        scale, receptive_radius = 2, 1
        def __init__(self):
            super().__init__()
            self.conv, self.shuffle = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.PixelShuffle(2)
        def forward(self, x):
            return self.shuffle(self.conv(x))

    summary = upscale_video(sys.argv[1], sys.argv[2], Tiny().eval(), tile=None,
                            options=VideoOptions(preset="ultrafast", batch=4))
    print(json.dumps({"frames": summary.frames,
                      "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
""")


def test_memory_is_bounded_by_the_batch_not_the_clip(tmp_path):
    """Peak RSS of a child process upscaling 1.5 s and 8 s of 320×240 (→ 640×480).

    Runs of one length vary by about ±10 MiB; holding the extra 162 frames would add 90 MiB.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get(
        "PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    peaks = {}
    for seconds in (1.5, 8.0):
        clip = make_clip(tmp_path / f"c{seconds}.mp4", seconds=seconds, size=(320, 240),
                         fps=25, audio=True, preset="ultrafast")
        run = subprocess.run([sys.executable, "-c", _CHILD, str(clip),
                              str(tmp_path / f"c{seconds}-x2.mp4")],
                             capture_output=True, text=True, env=env, timeout=240, check=False)
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout.strip().splitlines()[-1])
        assert report["frames"] == round(seconds * 25)
        peaks[seconds] = report["peak_kib"] * 1024
    extra_frames = round(6.5 * 25)
    held = extra_frames * (640 * 480 * 3 // 2 + 320 * 240 * 3 // 2)  # decoded in + out frames
    growth = peaks[8.0] - peaks[1.5]
    print(f"peak RSS {peaks[1.5] / 2**20:.0f} MiB (1.5 s) vs {peaks[8.0] / 2**20:.0f} MiB (8 s);"
          f" holding the extra frames would add {held / 2**20:.0f} MiB")
    assert growth < held / 3, (peaks, held)


def test_video_options_reach_the_encoder(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", seconds=0.5, audio=False)
    sizes = {}
    for crf in (10, 45):
        dst = tmp_path / f"crf{crf}.mp4"
        upscale_video(clip, dst, load_pretrained("espcn-x2"),
                      options=VideoOptions(crf=crf, preset="ultrafast"))
        sizes[crf] = dst.stat().st_size
    assert sizes[10] > 2 * sizes[45]  # the quality option changes the stream
    with av.open(str(tmp_path / "crf10.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert Fraction(c.streams.video[0].average_rate) == 10


def test_ten_bit_video_stays_ten_bit(tmp_path):
    with av.open(str(tmp_path / "deep.mkv"), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p10le"
        for i in range(4):
            rgb = np.full((48, 64, 3), 40 * i + 60, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p10le")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    upscale_video(tmp_path / "deep.mkv", tmp_path / "deep-x2.mkv", load_pretrained("espcn-x2"))
    with av.open(str(tmp_path / "deep.mkv")) as a, av.open(str(tmp_path / "deep-x2.mkv")) as b:
        before, after = list(a.decode(video=0)), list(b.decode(video=0))
    assert len(after) == 4 and after[0].format.name == "yuv420p10le"
    for x, y in zip(before, after, strict=True):  # flat frames stay flat, at 10-bit codes
        y_in = x.to_ndarray()[:48].astype(int)
        y_out = y.to_ndarray()[:96].astype(int)
        assert y_out.max() > 255 and abs(np.median(y_out) - np.median(y_in)) <= 3
