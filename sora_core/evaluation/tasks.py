"""Generate-and-score runs of ``sora eval --generate``: one function per task.

Each task takes the model, a prompt entry and a seed, generates with ``sora_core.pipeline`` (frame
conditions from ``sora_core.diffusion.conditions`` where the task needs given frames), and returns scored
clips with the video they scored. Given frames come from the world: the prompt's scene
(``expand.prompt_to_scene(prompt, seed)``, or the built-in prompt's own scene) rendered at the
output size, so every task has a ground truth.

    t2v      text -> video; prompt adherence etc.
    i2v      the scene's first frame -> video; + first_frame_psnr
    extend   the scene's clip continued forward; + boundary_continuity at the join
    loop     a loop through the scene's first frame; + loop_seam_ratio
    sdedit   the scene re-generated at each strength; + structure_iou@strength
    connect  a transition from the scene to another placement of it; + transition_smoothness and
             boundary_continuity (the worse of the two joins)
    vae      the scene encoded and decoded; + psnr, ssim
    long     a minute (``seconds``) in windows, scored per window (``evaluation.long``)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..world import metrics as M
from .evaluate import ClipResult, PromptEntry, fills_seed, prompt_for_model, score_clip
from .long import task_long

SDEDIT_STRENGTHS = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class RunSettings:
    """Output size and sampling settings of a run (None = the model's defaults)."""
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    cfg: float | None = None
    strengths: tuple[float, ...] = SDEDIT_STRENGTHS
    sampler: str | None = None
    shift: float | None = None
    seconds: float | None = None      # the long task's length (None: 60 s)
    expand: bool = False              # the prompt expanded into the world's caption style first


@dataclass
class TaskRun:
    """What a task hands back: scored clips and, for each, the frames to save."""
    clips: list[tuple[ClipResult, np.ndarray]]


# ---------------------------------------------------------------------------------------------
# Shared steps
# ---------------------------------------------------------------------------------------------

def _grid(model, s: RunSettings) -> tuple[int, int, int, float]:
    d = model.defaults
    frames = d.frames if s.frames is None else s.frames
    height, width = (d.height if s.height is None else s.height), (d.width if s.width is None else s.width)
    model.geometry(frames, height, width)   # a GeometryError names a bad size before any work
    return frames, height, width, float(d.fps)


def truth_frames(model, entry: PromptEntry, seed: int, s: RunSettings, variant: int = 0) -> np.ndarray:
    """The ground-truth clip of a prompt at the run's size: uint8 (T, H, W, 3)."""
    from ..prompts.expand import prompt_to_scene
    from ..world.render import render
    frames, height, width, fps = _grid(model, s)
    spec = entry.spec
    if spec is None or variant or (spec.width, spec.height, spec.frames) != (width, height, frames):
        spec = prompt_to_scene(entry.prompt, fills_seed(seed, entry.line, variant), width=width, height=height,
                               frames=frames, fps=fps)
    return render(spec)


def _generate(model, entry: PromptEntry, seed: int, s: RunSettings, plan=None) -> np.ndarray:
    """Generate at the run's size and settings, with an optional condition plan (spliced by it)."""
    from ..pipeline import generate
    from ..media.video_io import tensor_to_frames
    frames, height, width, fps = _grid(model, s)
    prompt = prompt_for_model(entry.prompt, seed, s.expand, width, height, frames, fps, entry.line)
    result = generate(model, prompt, frames=frames, height=height, width=width, steps=s.steps,
                      cfg=s.cfg, sampler=s.sampler, shift=s.shift, seed=seed, conditions=plan if plan is not None else ())
    video = plan.assemble(result.video) if plan is not None else result.video
    return tensor_to_frames(video)


def _tensor(frames: np.ndarray):
    from ..media.video_io import frames_to_tensor
    return frames_to_tensor(frames)


def _scored(model, entry, seed, task, frames, extra, suffix="") -> tuple[ClipResult, np.ndarray]:
    name = f"{task}_{entry.line:03d}_seed{seed}{suffix}.mp4"
    clip = score_clip(frames, model.defaults.fps, replace(entry, task=task), name, extra=extra, seed=seed)
    return clip, frames


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------

def task_t2v(model, entry, seed, s):
    return TaskRun([_scored(model, entry, seed, "t2v", _generate(model, entry, seed, s), {})])


def task_i2v(model, entry, seed, s):
    from ..diffusion.conditions import image_to_video
    truth = truth_frames(model, entry, seed, s)
    out = _generate(model, entry, seed, s, plan=image_to_video(model.vae, _tensor(truth[:1]).to(model.device)))
    return TaskRun([_scored(model, entry, seed, "i2v", out, {"first_frame_psnr": M.first_frame_psnr(truth[0], out)})])


def task_extend(model, entry, seed, s):
    from ..diffusion.conditions import extend_forward
    truth = truth_frames(model, entry, seed, s)
    out = _generate(model, entry, seed, s, plan=extend_forward(model.vae, _tensor(truth).to(model.device)))
    return TaskRun([_scored(model, entry, seed, "extend", out,
                            {"boundary_continuity": M.boundary_continuity(out, len(truth))})])


def task_loop(model, entry, seed, s):
    from ..diffusion.conditions import loop
    from ..geometry import pixel_frames
    frames, ft = _grid(model, s)[0], int(model.spec.vae.temporal_factor)
    if frames < pixel_frames(3, ft):
        raise ValueError(f"the loop task needs at least {pixel_frames(3, ft)} frames (the loop drops {ft} of them: "
                         f"the first frame and all but one frame of the final still), got frames={frames}")
    truth = truth_frames(model, entry, seed, s)
    out = _generate(model, entry, seed, s, plan=loop(model.vae, _tensor(truth[:1]).to(model.device)))
    return TaskRun([_scored(model, entry, seed, "loop", out, {"loop_seam_ratio": M.loop_seam_ratio(out)})])


def task_sdedit(model, entry, seed, s):
    from ..diffusion.conditions import sdedit
    from ..pipeline import encode_video
    truth = truth_frames(model, entry, seed, s)
    latents = encode_video(model, _tensor(truth))                     # encoded once, edited at each strength
    clips = []
    for strength in s.strengths:
        out = _generate(model, entry, seed, s, plan=sdedit(None, latents, float(strength)))
        key = f"structure_iou@{strength:.2f}"
        clips.append(_scored(model, entry, seed, "sdedit", out, {key: M.structure_preservation(truth, out)},
                             suffix=f"_s{strength:.2f}"))
    return TaskRun(clips)


def task_connect(model, entry, seed, s):
    from ..diffusion.conditions import connect
    a = truth_frames(model, entry, seed, s)
    b = truth_frames(model, entry, seed, s, variant=1)
    out = _generate(model, entry, seed, s, plan=connect(model.vae, _tensor(a).to(model.device),
                                                        _tensor(b).to(model.device)))
    j0, j1 = len(a), len(out) - len(b)
    extra = {"transition_smoothness": M.transition_smoothness(out, j0 - 1, j1 + 1),
             "boundary_continuity": max(M.boundary_continuity(out, j0), M.boundary_continuity(out, j1))}
    return TaskRun([_scored(model, entry, seed, "connect", out, extra)])


def task_vae(model, entry, seed, s):
    from ..pipeline import decode_latents, encode_video
    from ..media.video_io import tensor_to_frames
    truth = truth_frames(model, entry, seed, s)
    recon = tensor_to_frames(decode_latents(model, encode_video(model, _tensor(truth)))[0])
    extra = {"psnr": M.reconstruction_psnr(truth, recon), "ssim": M.reconstruction_ssim(truth, recon)}
    return TaskRun([_scored(model, entry, seed, "vae", recon, extra)])


TASK_FUNCTIONS = {"t2v": task_t2v, "i2v": task_i2v, "extend": task_extend, "loop": task_loop,
                  "sdedit": task_sdedit, "connect": task_connect, "vae": task_vae, "long": task_long}


# ---------------------------------------------------------------------------------------------
# A whole run
# ---------------------------------------------------------------------------------------------

def evaluate_generated(model, entries: list[PromptEntry], seeds: list[int], tasks: list[str],
                       out: Path, settings: RunSettings = RunSettings(), progress: bool = True) -> list[ClipResult]:
    """Run every task on every prompt x seed, write each video to ``out/videos`` (H.264 mp4) and
    return the scored clips (in prompt, seed, task order). The scores are of the generated frames
    themselves, before video compression."""
    from tqdm import tqdm
    from ..media.video_io import write_video
    unknown = [t for t in tasks if t not in TASK_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; allowed: {', '.join(TASK_FUNCTIONS)}")
    _grid(model, settings)
    results = []
    jobs = [(e, seed, t) for e in entries for seed in seeds for t in tasks]
    for entry, seed, task in tqdm(jobs, desc="generating + scoring", unit="run", disable=not progress):
        for clip, frames in TASK_FUNCTIONS[task](model, entry, seed, settings).clips:
            path = write_video(out / "videos" / clip.name, frames, model.defaults.fps)
            clip.name = str(path.relative_to(out))
            results.append(clip)
    return results
