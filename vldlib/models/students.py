"""Students: vision-only networks trained from scratch to match the teacher (paper §5.2).

``load_student(name, out_dim, in_chans)`` builds an *untrained* network whose last layer maps
to the teacher's embedding dimension ``out_dim``; that linear layer is the only projection
(no MLP projector), and its output is the raw student embedding S(x), ``[B, out_dim]``.

* ``resnet18`` (the paper's default): torchvision ResNet18, BasicBlock [2, 2, 2, 2], fc 512 -> out_dim;
  torchvision's init = the paper's (Kaiming-normal convs, BatchNorm weight 1 / bias 0, no zero-init
  of the residual branch).
* ``resnet50`` (Table 2 only): Bottleneck [3, 4, 6, 3], fc 2048 -> out_dim.
* ``vit_b_32`` (Table 8): torchvision ViT-B/32, head Linear(768 -> out_dim); option ``image_size``.
* ``vit_tiny`` (Table 8 in the offline world): the same torchvision ``VisionTransformer`` sized
  for 28 px input (patch 4 -> 7 x 7 tokens + class token, 4 layers, 4 heads, width 64, MLP 128),
  head Linear(64 -> out_dim); options ``image_size``, ``patch_size``, ``depth``, ``heads``, ``width``.
* ``small``: a fast CNN for the offline profile (28-32 px grey input), see :class:`SmallCNN`.

This module knows nothing about training, data or runs.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["SmallCNN", "STUDENTS", "load_student", "count_parameters", "student_cost"]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def student_cost(model: nn.Module, input_shape: tuple[int, int, int], *, repeats: int = 20,
                 threads: int = 1) -> dict[str, float]:
    """Size and CPU cost of one forward pass of ``model`` on one image of ``input_shape`` (C, H, W).

    ``params``: trainable parameters; ``flops``: floating-point operations counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts 2; matmul and convolution
    kernels only); ``latency_ms``: median wall time of ``repeats`` batch-1 forward passes in eval
    mode on the CPU with ``threads`` torch threads (after 3 warm-up passes; the caller's thread
    setting is restored). The model is left in eval mode on the CPU."""
    if repeats < 1 or threads < 1:
        raise ValueError(f"repeats and threads must be >= 1, got {repeats} and {threads}")
    if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape):
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape!r}")
    model = model.cpu().eval()
    x = torch.randn(1, *input_shape)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            for _ in range(3):
                model(x)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)
    return {"params": float(count_parameters(model)), "flops": float(counter.get_total_flops()),
            "latency_ms": 1000.0 * statistics.median(times)}


def _replace_first_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    new = nn.Conv2d(in_chans, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, bias=conv.bias is not None)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")  # torchvision's ResNet init
    return new


def _resnet(factory: Callable[..., nn.Module], out_dim: int, in_chans: int, **options: Any) -> nn.Module:
    model = factory(weights=None, num_classes=out_dim, **options)
    if in_chans != 3:
        model.conv1 = _replace_first_conv(model.conv1, in_chans)
    return model


def _resnet18(out_dim: int, in_chans: int = 3, **options: Any) -> nn.Module:
    from torchvision.models import resnet18

    return _resnet(resnet18, out_dim, in_chans, **options)


def _resnet50(out_dim: int, in_chans: int = 3, **options: Any) -> nn.Module:
    from torchvision.models import resnet50

    return _resnet(resnet50, out_dim, in_chans, **options)


def _vit_b_32(out_dim: int, in_chans: int = 3, image_size: int = 224, **options: Any) -> nn.Module:
    from torchvision.models import vit_b_32

    if image_size % 32:
        raise ValueError(f"vit_b_32 needs image_size divisible by the patch size 32, got {image_size}")
    model = vit_b_32(weights=None, num_classes=out_dim, image_size=image_size, **options)
    if in_chans != 3:
        _patch_embedding(model, in_chans)
    return model


def _patch_embedding(model: nn.Module, in_chans: int) -> None:
    """Replace a torchvision ViT's RGB patch embedding by one for ``in_chans`` channels
    (torchvision's init: truncated normal, std sqrt(1 / fan_in), zero bias)."""
    old = model.conv_proj
    model.conv_proj = nn.Conv2d(in_chans, old.out_channels, kernel_size=old.kernel_size, stride=old.stride)
    fan_in = in_chans * old.kernel_size[0] * old.kernel_size[1]
    nn.init.trunc_normal_(model.conv_proj.weight, std=(1.0 / fan_in) ** 0.5)
    nn.init.zeros_(model.conv_proj.bias)


def _vit_tiny(out_dim: int, in_chans: int = 3, image_size: int = 28, patch_size: int = 4, depth: int = 4,
              heads: int = 4, width: int = 64, **options: Any) -> nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer

    if options:
        raise TypeError(f"unexpected keyword arguments {sorted(options)}")
    for name, value in (("image_size", image_size), ("patch_size", patch_size), ("depth", depth),
                        ("heads", heads), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"vit_tiny {name} must be a positive int, got {value!r}")
    if image_size % patch_size:
        raise ValueError(f"vit_tiny needs image_size divisible by patch_size, got {image_size} and {patch_size}")
    if width % heads:
        raise ValueError(f"vit_tiny needs width divisible by heads, got {width} and {heads}")
    model = VisionTransformer(image_size=image_size, patch_size=patch_size, num_layers=depth, num_heads=heads,
                              hidden_dim=width, mlp_dim=2 * width, num_classes=out_dim)
    if in_chans != 3:
        _patch_embedding(model, in_chans)
    return model


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """A small fast CNN student for the offline profile (28-32 px input).

    Layout with width w (default 32): conv(in->w) @ full res, conv(w->w), maxpool /2,
    conv(w->2w), conv(2w->2w), maxpool /2, conv(2w->4w), global average pool,
    Linear(4w -> out_dim) (the only projection).  Every conv is 3x3 + BatchNorm + ReLU.
    w = 32 gives ~0.14M conv parameters + the final linear layer (4w*out_dim + out_dim).
    Kaiming-normal conv init, BatchNorm 1/0 (as the ResNets).  ``channels_last=True`` keeps weights
    and activations in NHWC memory layout, which trains ~1.3-1.4x faster on CPU at 28 px.
    """

    def __init__(self, out_dim: int, in_chans: int = 1, width: int = 32, channels_last: bool = True) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        w = int(width)
        self.features = nn.Sequential(
            *_conv_bn(in_chans, w), *_conv_bn(w, w), nn.MaxPool2d(2),
            *_conv_bn(w, 2 * w), *_conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            *_conv_bn(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(4 * w, out_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.fc(_pool_before_relu(self.features, x))


def _pool_before_relu(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``layers(x)`` with every ``ReLU, MaxPool2d`` pair applied as ``MaxPool2d, ReLU``.

    The same numbers, forward and backward: ``max_i relu(a_i) = relu(max_i a_i)`` (ReLU is monotone),
    and the gradient reaches the same element (the window's maximum, or none when it is <= 0). The
    ReLU and its backward then touch a quarter of the elements. The modules (and the state-dict
    keys) stay as declared."""
    mods = list(layers)
    i = 0
    while i < len(mods):
        if i + 1 < len(mods) and isinstance(mods[i], nn.ReLU) and isinstance(mods[i + 1], nn.MaxPool2d):
            x = mods[i](mods[i + 1](x))
            i += 2
        else:
            x = mods[i](x)
            i += 1
    return x


def _small(out_dim: int, in_chans: int = 3, width: int = 32, channels_last: bool = True, **options: Any) -> nn.Module:
    if options:
        raise TypeError(f"unexpected keyword arguments {sorted(options)}")
    return SmallCNN(out_dim, in_chans=in_chans, width=width, channels_last=channels_last)


STUDENTS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": _resnet18,
    "resnet50": _resnet50,
    "vit_b_32": _vit_b_32,
    "vit_tiny": _vit_tiny,
    "small": _small,
}


def load_student(name: str, out_dim: int, in_chans: int = 3, **options: Any) -> nn.Module:
    """Build an untrained student ``name`` whose output is ``[B, out_dim]`` (the teacher's dim).

    ``in_chans`` = input channels (1 for grey Fashion-MNIST).  Options: ``width`` for ``small``,
    ``image_size`` for ``vit_b_32``; ``image_size``, ``patch_size``, ``depth``,
    ``heads``, ``width`` for ``vit_tiny``; other keywords go to the torchvision constructor.
    """
    if name not in STUDENTS:
        raise ValueError(f"unknown student {name!r}: known students are {sorted(STUDENTS)}")
    if not isinstance(out_dim, int) or isinstance(out_dim, bool) or out_dim < 1:
        raise ValueError(f"out_dim must be a positive int (the teacher's embedding dim), got {out_dim!r}")
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise ValueError(f"in_chans must be a positive int (1 for grey, 3 for RGB), got {in_chans!r}")
    try:
        return STUDENTS[name](out_dim, in_chans=in_chans, **options)
    except TypeError as e:
        raise ValueError(f"bad option for student {name!r}: {e}") from e
