"""Pixel conventions and video files.

Inside the core, video is a float tensor (B, 3, T, H, W) in [-1, 1]; frames on disk and in the world
renderer are uint8 arrays (T, H, W, 3) RGB; ComfyUI's IMAGE is float (T, H, W, 3) in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange


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
