"""The causal primitives of the video VAE: the per-pass ``FeatureCache``, the inference convolution
``cached_conv`` and ``CausalConv3d`` (diffusers' ``WanCausalConv3d``: same parameters and names).

* Causality is carried by a ``FeatureCache`` passed down the call: each causal layer keeps the last
  frames it saw, so a video can be fed in chunks of any length and the result equals one pass over
  the whole video. Without a cache a call is one causal pass (training).
* Activations stay channels-last (N, C, T, H, W with C innermost in memory, ``CL3D``), and oneDNN's
  convolutions run without reorders.
* Spatial zero padding is done by the convolutions themselves; only the causal time padding is
  concatenated (the cached frames in front of the chunk).

The blocks built from them (norms, residual and attention blocks, resamplers, encoder, decoder) are in
``vae_blocks``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CL3D = torch.channels_last_3d


# ---------------------------------------------------------------------------------------------
# Causal state
# ---------------------------------------------------------------------------------------------

class FeatureCache:
    """The causal state of one encode or decode pass over a video, chunk after chunk.

    For each causal layer it holds the last input frames that layer saw (its left context), and for
    the temporal resamplers a marker that the video's first frame has gone through.
    """

    def __init__(self):
        self._state: dict[int, Tensor | bool] = {}
        self._weights: dict[tuple[int, bool], tuple] = {}
        self.final = False          # set before the last chunk: nothing needs to be kept after it

    def get(self, layer: nn.Module):
        return self._state.get(id(layer))

    def put(self, layer: nn.Module, value) -> None:
        self._state[id(layer)] = value

    def keeps(self) -> bool:
        """Whether layers should store their last frames (not during the last chunk)."""
        return not self.final

    def weights(self, conv: nn.Module, dtype: torch.dtype, last_tap: bool = False) -> tuple[Tensor, Tensor | None]:
        """conv's weight and bias in ``dtype``, channels-last, made once per pass (inference only).

        ``last_tap`` keeps only the newest temporal tap (kernel depth 1), for a frame whose left
        context is all zeros.
        """
        w = conv.weight
        key = (w._version, w.data_ptr(), dtype)
        hit = self._weights.get((id(conv), last_tap))
        if hit is None or hit[0] != key:
            fmt = CL3D if w.dim() == 5 else torch.channels_last
            w = w.detach()[:, :, -1:] if last_tap else w.detach()
            bias = conv.bias.detach().to(dtype) if conv.bias is not None else None
            hit = (key, w.to(dtype).contiguous(memory_format=fmt), bias)
            self._weights[(id(conv), last_tap)] = hit
        return hit[1], hit[2]


def cached_conv(conv: nn.Module, x: Tensor, cache: FeatureCache, padding=None, last_tap: bool = False) -> Tensor:
    """Inference convolution (2D or 3D) with the pass's prepared weights, in the autocast dtype if any.

    On the CPU it calls oneDNN directly: PyTorch's heuristic sends small float32 inputs to an im2col
    path that is several times slower and allocates column buffers of 27 x the input.
    """
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    weight, bias = cache.weights(conv, dtype, last_tap)
    x = x.to(dtype)
    padding = conv.padding if padding is None else padding
    if device == "cpu" and dtype in (torch.float32, torch.bfloat16) and torch.backends.mkldnn.is_available():
        return torch.mkldnn_convolution(x, weight, bias, padding, conv.stride, conv.dilation, conv.groups)
    fn = F.conv3d if x.dim() == 5 else F.conv2d
    return fn(x, weight, bias, conv.stride, padding, conv.dilation, conv.groups)


# ---------------------------------------------------------------------------------------------
# The causal convolution
# ---------------------------------------------------------------------------------------------

class CausalConv3d(nn.Conv3d):
    """3D convolution padded in time on the left only (``2 * padding_t`` frames), zero in space.

    With a cache the left context is the previous chunk's last frames instead of zeros. A ``norm``
    given to ``forward`` (``vae_blocks.RMSNorm``, which can write into ``out=``) is applied to x on its
    way into the padded input (conv(norm(x)), one pass fewer over memory than norm then pad).
    x: (B, C_in, T, H, W) -> (B, C_out, T', H', W').
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        pt, ph, pw = self.padding
        self.time_pad = 2 * pt
        self.padding = (0, ph, pw)

    def forward(self, x: Tensor, cache: FeatureCache | None = None, norm: nn.Module | None = None) -> Tensor:
        if torch.is_grad_enabled():
            return super().forward(self._extend(norm(x) if norm is not None else x, cache))
        if not self.time_pad:
            return self._conv(norm(x) if norm is not None else x, cache)
        B, C, T, H, W = x.shape
        prev = cache.get(self) if cache is not None else None
        if prev is None and T == 1 and self.stride[0] == 1:
            return self._first_frame(norm(x) if norm is not None else x, cache)
        buf = torch.empty((B, C, self.time_pad + T, H, W), dtype=x.dtype, device=x.device, memory_format=CL3D)
        if prev is None:
            buf[:, :, :self.time_pad].zero_()
        else:
            buf[:, :, :self.time_pad].copy_(prev)
        if norm is not None:
            norm(x, out=buf[:, :, self.time_pad:])
        else:
            buf[:, :, self.time_pad:].copy_(x)
        if cache is not None and cache.keeps():
            cache.put(self, buf[:, :, -self.time_pad:].clone())
        return self._conv(buf, cache)

    def _conv(self, x: Tensor, cache: FeatureCache | None) -> Tensor:
        """The convolution itself, with the pass's prepared weights when there is a cache."""
        return super().forward(x) if cache is None else cached_conv(self, x, cache)

    def _first_frame(self, x: Tensor, cache: FeatureCache | None) -> Tensor:
        """One frame after zeros: only the newest temporal tap sees data (a third of the work)."""
        if cache is not None:
            if cache.keeps():
                zeros = x.new_zeros(x.shape[:2] + (self.time_pad - 1,) + x.shape[3:])
                cache.put(self, torch.cat([zeros, x], dim=2))
            return cached_conv(self, x, cache, last_tap=True)
        return F.conv3d(x, self.weight[:, :, -1:], self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def _extend(self, x: Tensor, cache: FeatureCache | None) -> Tensor:
        """Left context in front of x: (B, C, T, H, W) -> (B, C, time_pad + T, H, W)."""
        if not self.time_pad:
            return x
        prev = cache.get(self) if cache is not None else None
        if prev is None:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, 0))
        else:
            x = torch.cat([prev.to(x.dtype), x], dim=2)
        if cache is not None:
            cache.put(self, x[:, :, -self.time_pad:].detach().clone())
        return x
