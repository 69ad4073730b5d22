"""Block offload: a model's blocks stay in host memory and each is streamed to the compute device just
before it runs, then dropped from the device again.

    off = BlockOffload(dit.blocks, device="cuda")     # dit.blocks stay on the CPU
    dit(x, t, context)                                 # block i is copied in, runs, is released
    off.remove()                                       # hooks gone, blocks back in host memory

Mechanics: a forward pre-hook on every block replaces each of its parameters and buffers (fp8 / bf16
storage included, with their ``Upcast`` scales) by a device copy of the host tensor; a forward hook
puts the host tensors back, so the device copy is freed once the block has run and nothing
is ever copied back (the host tensors are never modified). Host tensors are pinned when the device is
a GPU, so the copies can run asynchronously. The device then holds one block's weights at a time
(plus the activations); the cost is one host-to-device copy of the blocks per model call.

The hooks fire when the blocks are *called* (``block(...)``): the DiT's plain kernels do that, its fused
CPU kernels (``kernels.dit_tokens``) read the block tensors directly, so ``offload_dit`` switches the
DiT to the plain kernels (on a GPU both run the same SDPA attention).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


def _slots(block: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(module, "param" | "buffer", name) of every tensor a block holds, nested modules included."""
    out = []
    for m in block.modules():
        out += [(m, "param", n) for n, p in m._parameters.items() if p is not None]
        out += [(m, "buffer", n) for n, b in m._buffers.items() if b is not None]
    return out


def _get(m: nn.Module, kind: str, name: str) -> torch.Tensor:
    return m._parameters[name] if kind == "param" else m._buffers[name]


def _point(m: nn.Module, kind: str, name: str, tensor: torch.Tensor) -> None:
    """Make ``tensor`` the module's parameter / buffer ``name`` (a host Parameter is put back as is; a
    device copy becomes a new Parameter, as ``.data`` cannot change the kind of device everywhere)."""
    if kind == "buffer":
        m._buffers[name] = tensor
    elif isinstance(tensor, nn.Parameter):
        m._parameters[name] = tensor
    else:
        m._parameters[name] = nn.Parameter(tensor, requires_grad=m._parameters[name].requires_grad)


class BlockOffload:
    """Keep ``blocks`` in host memory (``storage``) and stream each to ``device`` while it runs.

    ``on_move(event, index)`` (optional) is told every move: ("load", i) before block i runs,
    ("unload", i) after."""

    def __init__(self, blocks: Sequence[nn.Module], device: torch.device | str,
                 storage: torch.device | str = "cpu", on_move: Callable[[str, int], None] | None = None):
        self.device, self.storage = torch.device(device), torch.device(storage)
        self.on_move = on_move
        self.blocks = list(blocks)
        pin = self.device.type == "cuda" and self.storage.type == "cpu"
        self._host: list[list[tuple[nn.Module, str, str, torch.Tensor]]] = []
        self._hooks = []
        for i, block in enumerate(self.blocks):
            slots = []
            for m, kind, name in _slots(block):
                host = _get(m, kind, name).detach().to(self.storage)
                host = host.pin_memory() if pin else host
                if kind == "param":
                    host = nn.Parameter(host, requires_grad=_get(m, kind, name).requires_grad)
                _point(m, kind, name, host)
                slots.append((m, kind, name, host))
            self._host.append(slots)
            self._hooks.append(block.register_forward_pre_hook(self._loader(i)))
            self._hooks.append(block.register_forward_hook(self._unloader(i)))

    def _loader(self, i: int):
        def hook(module, args):
            for m, kind, name, host in self._host[i]:
                _point(m, kind, name, host.detach().to(self.device, non_blocking=True))
            if self.on_move is not None:
                self.on_move("load", i)
        return hook

    def _unloader(self, i: int):
        def hook(module, args, output):
            for m, kind, name, host in self._host[i]:
                _point(m, kind, name, host)
            if self.on_move is not None:
                self.on_move("unload", i)
        return hook

    def to(self, device: torch.device | str) -> "BlockOffload":
        """Stream to another compute device from now on (the blocks stay in host memory)."""
        self.device = torch.device(device)
        return self

    def host_bytes(self) -> int:
        """Bytes of the blocks kept in host memory."""
        return sum(h.numel() * h.element_size() for slots in self._host for *_, h in slots)

    def remove(self) -> None:
        """Remove the hooks; the blocks stay in host memory (move the model where you want it)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []


def offload_dit(dit: nn.Module, device: torch.device | str, storage: torch.device | str = "cpu",
                **kw) -> BlockOffload:
    """Everything of a DiT but its blocks on ``device``; the blocks streamed from ``storage`` (and the
    plain kernels, whose block calls fire the hooks)."""
    device = torch.device(device)
    for name, child in dit.named_children():
        if name != "blocks":
            child.to(device)
    for name, p in list(dit._parameters.items()):
        if p is not None:
            _point(dit, "param", name, p.detach().to(device))
    if hasattr(dit, "set_kernels"):
        dit.set_kernels("plain")
    return BlockOffload(dit.blocks, device, storage, **kw)


__all__ = ["BlockOffload", "offload_dit"]
