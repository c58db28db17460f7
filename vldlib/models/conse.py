"""The ConSE proxy teacher (the offline default, not CLIP): an ImageNet classifier
(EfficientNet-Lite, :mod:`vldlib.models.efficientnet`) turned into a vision-language embedding by
ConSE (Norouzi et al., ICLR 2014) over MiniLM sentence embeddings (:mod:`vldlib.models.minilm`).

The pure ConSE functions (:func:`conse_combine`, :func:`conse_name_embeddings`,
:func:`conse_text_space`, :func:`conse_identifier`) are shared with the proxy-teacher search
(:mod:`vldlib.study.teacher_search`), which recomputes every option from cached logits.
"""
from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vldlib.device import resolve_device
from vldlib.models.base import check_images, check_texts, freeze, imagenet_class_names
from vldlib.models.efficientnet import (BACKBONES, CONSE_BACKENDS, OpenVINOClassifier, fuse_efficientnet,
                                        load_efficientnet)
from vldlib.models.minilm import MiniLMTextEncoder
from vldlib.models.specs import TeacherSpec, teacher_spec

__all__ = ["ConSEProxyTeacher", "CONSE_BACKENDS", "CONSE_COMBINE", "CONSE_ENSEMBLE", "conse_combine",
           "conse_name_embeddings", "conse_text_space", "conse_identifier"]


#: How ConSE weighs the top-T ImageNet classes (:func:`conse_combine`).
CONSE_COMBINE: tuple[str, ...] = ("probs", "logits")

#: CLIP's seven-template ImageNet ensemble (Radford et al. 2021, the released notebook's short list),
#: for ``template=CONSE_ENSEMBLE`` (the ImageNet-name side of the proxy teacher).
CONSE_ENSEMBLE: tuple[str, ...] = ("itap of a {c}.", "a bad photo of the {c}.", "a origami {c}.",
                                   "a photo of the large {c}.", "a {c} in a video game.", "art of the {c}.",
                                   "a photo of the small {c}.")


def _conse_templates(template: str | Sequence[str]) -> tuple[str, ...]:
    """One template or an ensemble, as a non-empty tuple; each must hold ``{c}``."""
    templates = (template,) if isinstance(template, str) else tuple(template)
    if not templates:
        raise ValueError("template must be a string with '{c}' or a non-empty list of them, got an empty list")
    for t in templates:
        if not isinstance(t, str) or "{c}" not in t:
            raise ValueError(f"template must contain '{{c}}' for the class name, got {t!r}")
    return templates


def conse_identifier(backbone: str, top_t: int, templates: Sequence[str], temperature: float = 1.0,
                     combine: str = "probs", centre: bool = False) -> str:
    """The ConSE teacher's ``identifier`` (image- and text-feature cache keys). The default options give
    ``conse-proxy:<backbone>:T<top_t>:<template>``; every other option adds a suffix, so changed options
    never reuse another configuration's features."""
    out = f"conse-proxy:{backbone}:T{int(top_t)}:{' | '.join(templates)}"
    if float(temperature) != 1.0:
        out += f":temp{float(temperature)!r}"
    if combine != "probs":
        out += f":combine-{combine}"
    if centre:
        out += ":centred"
    return out


def conse_name_embeddings(encode: Callable[[list[str]], Tensor], names: Sequence[str], templates: Sequence[str],
                          centre: bool = False) -> tuple[Tensor, Tensor]:
    """The ImageNet-name embeddings s(y) ``[len(names), D]`` (unit rows) and the mean mu of the uncentred ones.

    One template: s(y) = encode(template(y)); K templates: s(y) = normalize(1/K sum_k encode(template_k(y)))
    (``encode`` returns unit rows). ``centre``: s(y) <- normalize(s(y) - mu)."""
    embs = [encode([t.format(c=name) for name in names]) for t in templates]
    emb = embs[0] if len(embs) == 1 else F.normalize(torch.stack(embs).mean(0), dim=-1)
    mu = emb.mean(0)
    return (F.normalize(emb - mu, dim=-1) if centre else emb), mu


def conse_text_space(emb: Tensor, mu: Tensor, centre: bool) -> Tensor:
    """Class-text embeddings in the image features' space: normalize(g - mu) when ``centre``, else g."""
    return F.normalize(emb - mu.to(emb.device), dim=-1) if centre else emb


def conse_combine(logits: Tensor, emb: Tensor, top_t: int, temperature: float = 1.0,
                  combine: str = "probs") -> Tensor:
    """ConSE's image embedding from ImageNet logits z ``[B, 1000]`` and name embeddings s ``[1000, D]``.

    ``"probs"`` (ConSE): p = softmax(z / temperature), f(x) = sum_{y in Top_T} p_y s(y) / sum_{y in Top_T} p_y.
    ``"logits"``: f(x) = sum_{y in Top_T} (z_y - mean(z)) s(y), the per-image centred logits as weights
    (a temperature would only scale f). Top_T: the T largest z (ties to the smaller index as ``topk``).
    Returns ``[B, D]`` unnormalised.
    """
    if combine == "logits":
        w, idx = (logits - logits.mean(-1, keepdim=True)).topk(top_t, dim=-1)
    elif temperature == 1.0:  # the reference ConSE computation, kept op for op
        probs = logits.softmax(-1)
        p, idx = probs.topk(top_t, dim=-1)
        w = p / p.sum(-1, keepdim=True)
    else:  # the same weights, p_y / sum_{Top_T} p = softmax over the top-T of z / temperature, picked on z
        z, idx = logits.topk(top_t, dim=-1)
        w = (z / temperature).softmax(-1)
    if top_t > 64:  # a dense [B, 1000] weight matrix: no [B, T, D] gather
        return torch.zeros_like(logits).scatter_(-1, idx, w.to(logits.dtype)) @ emb
    return torch.einsum("bt,btd->bd", w, emb[idx])


class ConSEProxyTeacher:
    """The offline *proxy teacher* (not CLIP): ConSE over an ImageNet classifier and MiniLM.

    Image embedding (ConSE, Norouzi et al. 2014, Eq. 1 there): with p(y|x) the EfficientNet-Lite
    ImageNet softmax, Top_T(x) its T most probable classes and s(y) the MiniLM embedding of
    ``template.format(c=name(y))``,

        f(x) = sum_{y in Top_T(x)} p(y|x) s(y) / sum_{y in Top_T(x)} p(y|x).

    Text embedding: g(l) = s(l), the MiniLM embedding of the class text (L2-normalised).
    Both live in MiniLM's 384-d space, so zero-shot prediction is argmax_c cos(f(x), g(l_c)) as
    with CLIP (paper §3 classification rule).

    Preprocessing: grey images are inverted (``invert="auto"``: for 1-channel input, so
    Fashion-MNIST's light-on-dark becomes ImageNet-like dark-on-light) and replicated to RGB,
    resized to ``image_size`` (bilinear, antialiased) and normalised as EfficientNet-Lite was
    trained: (255 x - 127) / 128, i.e. (x - 0.498) / 0.502.
    The 1000 ImageNet class-text embeddings are computed once per instance.

    ``backend`` (:data:`CONSE_BACKENDS`): ``"torch"`` is the reference path (PyTorch, fp32,
    channels_last, BatchNorm folded); ``"openvino"`` runs the same classifier through OpenVINO
    on the CPU, in bf16 where the CPU has it natively (else f32), with the resize done inside
    the compiled graph as two small matmuls (:mod:`vldlib.models.efficientnet`) - about 2-3x the
    reference's images/s at 224 px on 2 threads (``benchmarks/teacher.py``). Its features
    differ slightly from the reference's (bf16), so the backend and its precision are part of
    ``preprocess_id`` and so of the image-feature cache key; text features are the same.

    Options of the embedding (each part of ``identifier``, so of the image- and text-feature cache
    keys and of a run's hash; the defaults keep the plain ConSE above and its identifier):
    ``temperature`` (softmax of z / temperature), ``combine`` ("probs" as above, or "logits":
    :func:`conse_combine`), ``template`` (one string, or a list of templates whose MiniLM
    embeddings are averaged per ImageNet name, e.g. :data:`CONSE_ENSEMBLE`) and ``centre``: the
    ImageNet names' mean mu is subtracted from every s(y) and the rows renormalised, and the class
    texts are centred with the **same** mu, g(l) = normalize(s(l) - mu), so images and texts keep
    one space (a student's L_mse target and its class texts agree). The class texts' template
    is the trainer's (``template`` of the run config), not the ensemble.
    """

    spec: ClassVar[TeacherSpec] = teacher_spec("conse")

    def __init__(
        self,
        backbone: str = "lite0",
        top_t: int = 10,
        template: str = "a photo of a {c}",
        image_size: int = 224,
        invert: bool | str = "auto",
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        channels_last: bool = True,
        fuse_bn: bool = True,
        backend: str = "torch",
        temperature: float = 1.0,
        combine: str = "probs",
        centre: bool = False,
    ) -> None:
        if backend not in CONSE_BACKENDS:
            raise ValueError(f"unknown ConSE backend {backend!r}: use one of {list(CONSE_BACKENDS)} "
                             "('torch' is the reference path, 'openvino' the fast CPU one)")
        if backbone not in BACKBONES:
            raise ValueError(f"unknown ConSE backbone {backbone!r}: use one of {sorted(BACKBONES)}")
        if not 1 <= int(top_t) <= 1000:
            raise ValueError(f"top_t must be in 1..1000 (ImageNet classes), got {top_t}")
        templates = _conse_templates(template)
        if combine not in CONSE_COMBINE:
            raise ValueError(f"combine must be one of {list(CONSE_COMBINE)}, got {combine!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number (1 = the classifier's own softmax), "
                             f"got {temperature!r}")
        if combine == "logits" and float(temperature) != 1.0:
            raise ValueError(f"temperature={temperature!r} has no effect with combine='logits' (it only scales "
                             "f(x)); leave it at 1 or use combine='probs'")
        if centre not in (True, False):
            raise ValueError(f"centre must be True or False, got {centre!r}")
        if int(image_size) < 32:
            raise ValueError(f"image_size must be >= 32 pixels, got {image_size}")
        if invert not in (True, False, "auto"):
            raise ValueError(f"invert must be True, False or 'auto', got {invert!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.backbone = backbone
        self.top_t = int(top_t)
        self.template = template
        self.templates = templates
        self.temperature = float(temperature)
        self.combine = combine
        self.centre = bool(centre)
        self.image_size = int(image_size)
        self.invert = invert
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        if backend.startswith("openvino") and self.device.type != "cpu":
            raise ValueError(f"backend={backend!r} runs on the CPU; got device={str(device)!r}: use "
                             "device='cpu' or backend='torch'")
        self.backend = backend
        self.channels_last = bool(channels_last)
        net = freeze(load_efficientnet(backbone, self.image_size))
        if fuse_bn:
            net = fuse_efficientnet(net)
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.classifier = net
        self._ov = (OpenVINOClassifier(net, self.image_size, f32=backend == "openvino-f32")
                    if backend.startswith("openvino") else None)
        self.text_encoder = MiniLMTextEncoder(self.device)
        self.embed_dim = self.text_encoder.dim
        self.class_names = imagenet_class_names()
        self._class_text: Tensor | None = None
        self._name_mean: Tensor | None = None
        self.identifier = conse_identifier(backbone, self.top_t, templates, self.temperature, combine, self.centre)
        self.preprocess_id = (
            f"conse:invert-{invert}:grey2rgb:resize{self.image_size}-bilinear-aa:norm(255x-127)/128"
        )
        if self._ov is not None:  # the reference path keeps its old key (and cached features)
            self.preprocess_id += f":openvino-{self._ov.precision}"

    @property
    def class_text_embeddings(self) -> Tensor:
        """s(y) for the 1000 ImageNet classes, [1000, 384] (unit norm), computed once per instance.

        One template: s(y) = MiniLM(template(y)). An ensemble of K templates:
        s(y) = normalize(1/K sum_k MiniLM(template_k(y))). With ``centre=True`` the names' mean
        mu = 1/1000 sum_y s(y) is subtracted and the rows renormalised: normalize(s(y) - mu)."""
        if self._class_text is None:
            emb, mu = conse_name_embeddings(self.text_encoder, self.class_names, self.templates, self.centre)
            self._class_text, self._name_mean = emb.to(self.device), mu.to(self.device)
        return self._class_text

    @property
    def name_mean(self) -> Tensor:
        """mu, the mean of the uncentred ImageNet-name embeddings s(y) [384] (what ``centre`` subtracts)."""
        self.class_text_embeddings
        assert self._name_mean is not None
        return self._name_mean

    def _text_space(self, emb: Tensor) -> Tensor:
        """Class texts into the image features' space: with ``centre=True``, g(l) = normalize(s(l) - mu)
        with the ImageNet names' mean mu, so image and text features share one origin."""
        return conse_text_space(emb, self.name_mean, self.centre) if self.centre else emb

    def preprocess(self, images: Tensor) -> Tensor:
        """[B, C, H, W] in [0, 1] -> [B, 3, image_size, image_size], EfficientNet-Lite normalised."""
        x = check_images(images, type(self).__name__).to(self.device, torch.float32)
        grey = x.shape[1] == 1
        if self.invert is True or (self.invert == "auto" and grey):
            x = 1.0 - x
        if grey:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        x = (x * 255.0 - 127.0) / 128.0
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def logits(self, images: Tensor) -> Tensor:
        """ImageNet logits of one batch through the chosen backend, [B, 1000] fp32."""
        if self._ov is None:
            return self.classifier(self.preprocess(images)).float()
        # openvino: invert + normalise at the loaded size (cheap); resize + classify in the graph
        x = check_images(images, type(self).__name__).to(torch.float32)
        if self.invert is True or (self.invert == "auto" and x.shape[1] == 1):
            x = 1.0 - x
        return self._ov((x * 255.0 - 127.0) / 128.0)

    def imagenet_probs(self, images: Tensor) -> Tensor:
        """p(y|x) over the 1000 ImageNet classes, [B, 1000]."""
        with torch.inference_mode():
            return torch.cat([self.logits(c).softmax(-1) for c in images.split(self.batch_size)]).cpu()

    def encode_image(self, images: Tensor) -> Tensor:
        """f(x) (ConSE): [B, C, H, W] float in [0, 1] -> [B, 384] fp32 on CPU."""
        check_images(images, type(self).__name__)
        emb = self.class_text_embeddings
        out = []
        with torch.inference_mode():
            for chunk in images.split(self.batch_size):
                logits = self.logits(chunk).to(emb.device)
                out.append(conse_combine(logits, emb, self.top_t, self.temperature, self.combine).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """g(l): MiniLM embeddings of the texts, [M, 384] fp32 on CPU (unit norm; centred as the
        ImageNet names when ``centre=True``)."""
        emb = self.text_encoder(check_texts(texts, type(self).__name__))
        return self._text_space(emb.to(self.device)).cpu() if self.centre else emb

    @property
    def token_width(self) -> int:
        """Width of MiniLM's word embeddings (the proxy teacher's text side; CoOp context lives there)."""
        return self.text_encoder.token_width

    def encode_text_with_context(self, ctx: Tensor, texts: Sequence[str]) -> Tensor:
        """CoOp for the proxy teacher: through MiniLM's token embeddings
        (:meth:`MiniLMTextEncoder.encode_with_context`), centred as :meth:`encode_text`. Differentiable in ``ctx``."""
        return self._text_space(self.text_encoder.encode_with_context(ctx, check_texts(texts, type(self).__name__)))

    def __repr__(self) -> str:
        return f"ConSEProxyTeacher({self.identifier!r}, proxy teacher (not CLIP), dim={self.embed_dim})"
