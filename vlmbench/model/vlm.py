"""The VLM encoder: one BERT over [CLS] video [SEP] text [SEP], video tokens from an MLP over 512-d S3D features.

Module names follow the authors' checkpoint (videomlp.linear1/LayerNorm/linear2, bert.*, cls.predictions.*)
so a converter for the released weights is a thin, checkable key mapping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F
from transformers import BertConfig, BertModel
from transformers.activations import ACT2FN

from ..errors import InputError
from ..io import atomic_write, load_exactly, read_safetensors, write_json
from . import backbone as bb
from . import masks
from .layout import MAX_TEXT_TOKENS, TEXT_START, VIDEO_SEP, VIDEO_START, position_ids, token_type_ids
from .linear_ce import linear_cross_entropy

CONFIG_FILE = "vlm_config.json"
WEIGHTS_FILE = "model.safetensors"


class VideoTokenMLP(nn.Module):
    """512 -> hidden: Linear, GELU (exact), LayerNorm (torch default eps 1e-5), Linear."""

    def __init__(self, input_dim: int, hidden: int):
        super().__init__()
        self.linear1 = nn.Linear(input_dim, hidden)
        self.LayerNorm = nn.LayerNorm(hidden)
        self.linear2 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.LayerNorm(nn.functional.gelu(self.linear1(x))))


class PredictionTransform(nn.Module):
    """BERT's MLM transform: dense + activation + LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(h)))


class TokenHead(nn.Module):
    """cls.predictions: transform, then a decoder tied to the word embeddings. The VLM (MTM) loss uses no
    vocabulary bias, as the authors' BertMTMPredictionHead; `bias` serves the MFM-MLM baseline's MLM loss
    and captioning's BertOnlyMLMHead (zeros unless loaded, see VLM.from_backbone)."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = PredictionTransform(config)
        self.word_embeddings = word_embeddings  # tied, not a copy
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def vocab_logits(self, h: torch.Tensor, with_bias: bool = True) -> torch.Tensor:
        logits = h @ self.word_embeddings.weight.T
        return logits + self.bias if with_bias else logits

    def nll(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of transform + vocab_logits (with bias) at `hidden` against token ids, without
        holding every row's vocabulary logits (linear_cross_entropy)."""
        return linear_cross_entropy(self.transform(hidden), self.word_embeddings.weight, target, bias=self.bias)


class _Head(nn.Module):
    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = TokenHead(config, word_embeddings)


@dataclass
class VLMConfig:
    backbone: str = bb.DEFAULT
    video_dim: int = 512
    bert: dict = field(default_factory=dict)
    # How cls.predictions was initialised: {"transform": "loaded ..." | "fresh ...", "bias": ...}
    head: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)  # where converted weights came from (vlmbench convert)


# ---- vlm_config.json: every field checked before a model is built ------------------------------------------
CONFIG_LIMIT = 1 << 20  # bytes; a real vlm_config.json is ~2 KB
SIZE_KEYS = (  # BERT sizes: positive integers
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)
PROB_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_config(path: Path) -> VLMConfig:
    """VLMConfig of a checkpoint's vlm_config.json; any wrong field is an InputError naming the file and key."""
    from ..io import read_json

    raw = read_json(path, CONFIG_LIMIT, "a checkpoint config")

    def bad(key: str, want: str, value: object) -> InputError:
        return InputError(f"key {key!r}: expected {want}, got {_short(value)}", path=path)

    if not isinstance(raw, dict):
        raise InputError(f"expected a JSON object, got {type(raw).__name__}", path=path)
    known = {f.name for f in fields(VLMConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})", path=path)
    backbone = raw.get("backbone", bb.DEFAULT)
    if not isinstance(backbone, str) or not backbone.strip():
        raise bad("backbone", "a backbone name or folder", backbone)
    video_dim = raw.get("video_dim", 512)
    if type(video_dim) is not int or video_dim != 512:
        raise bad("video_dim", "512 (the width of the S3D features)", video_dim)
    for key in ("bert", "head", "source"):
        if not isinstance(raw.get(key, {}), dict):
            raise bad(key, "a JSON object", raw[key])
    _check_bert(raw.get("bert", {}), bad)
    return VLMConfig(**raw)


def _check_sizes(bert: BertConfig, state: dict[str, torch.Tensor], weights: Path) -> None:
    layers = {int(k.split(".")[3]) for k in state if k.startswith("bert.encoder.layer.") and k.split(".")[3].isdigit()}
    expect = {
        "bert.embeddings.word_embeddings.weight": (bert.vocab_size, bert.hidden_size),
        "bert.embeddings.position_embeddings.weight": (bert.max_position_embeddings, bert.hidden_size),
        "bert.embeddings.token_type_embeddings.weight": (bert.type_vocab_size, bert.hidden_size),
        "bert.encoder.layer.0.intermediate.dense.weight": (bert.intermediate_size, bert.hidden_size),
    }
    for key, shape in expect.items():
        if key in state and tuple(state[key].shape) != shape:
            raise InputError(
                f"checkpoint does not fit its config ({key} is {tuple(state[key].shape)}, the config makes {shape})",
                path=weights,
            )
    if len(layers) != bert.num_hidden_layers:
        raise InputError(
            f"checkpoint does not fit its config ({len(layers)} encoder layers, the config makes "
            f"{bert.num_hidden_layers})",
            path=weights,
        )


def _check_bert(bert: dict, bad) -> None:
    """The BERT config's fields: each of BertConfig's own keys of its default's type, sizes positive, hidden size
    a multiple of the heads, probabilities in [0, 1], a known activation; other keys are left to transformers."""
    import math

    defaults = BertConfig().to_dict()
    for key, value in bert.items():
        where = f"bert.{key}"
        default = defaults.get(key)
        if key in SIZE_KEYS:
            if type(value) is not int or value < 1:
                raise bad(where, "a positive integer", value)
        elif key in PROB_KEYS or key == "classifier_dropout":
            if value is None and key == "classifier_dropout":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise bad(where, "a probability in [0, 1]", value)
            bert[key] = float(value)
        elif key in ("layer_norm_eps", "initializer_range"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
                raise bad(where, "a positive number", value)
            bert[key] = float(value)  # BertConfig takes only floats here; 1 in a hand-written file means 1.0
        elif key == "hidden_act":
            if not isinstance(value, str) or value not in ACT2FN:
                raise bad(where, "a transformers activation such as 'gelu'", value)
        elif key in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if value is not None and (type(value) is not int or value < 0):
                raise bad(where, "a token id (a non-negative integer) or null", value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise bad(where, "true or false", value)
        elif isinstance(default, int):
            if type(value) is not int:
                raise bad(where, "an integer", value)
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise bad(where, "a string", value)
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise bad(where, "a JSON object", value)
    heads, hidden = bert.get("num_attention_heads", 12), bert.get("hidden_size", 768)
    if hidden % heads:
        raise bad("bert.hidden_size", f"a multiple of bert.num_attention_heads ({heads})", hidden)
    vocab, pad = bert.get("vocab_size", 30522), bert.get("pad_token_id", 0)
    if pad is not None and pad >= vocab:
        raise bad("bert.pad_token_id", f"below bert.vocab_size ({vocab})", pad)


HEAD_PREFIX = "cls.predictions."
# our name -> the names BERT checkpoints use (bert-base-uncased's own file keeps TF's gamma/beta)
TRANSFORM_KEYS = {
    "dense.weight": ("dense.weight",),
    "dense.bias": ("dense.bias",),
    "LayerNorm.weight": ("LayerNorm.weight", "LayerNorm.gamma"),
    "LayerNorm.bias": ("LayerNorm.bias", "LayerNorm.beta"),
}


def backbone_head(backbone: str) -> tuple[dict[str, torch.Tensor], Path | None]:
    """The backbone folder's cls.predictions.transform.* (our names) and cls.predictions.bias, when its
    model.safetensors has them (bert-base-uncased does; MiniLM and the tiny backbone do not)."""
    path = bb.resolve(backbone)
    if path is None:
        return {}, None
    weights = bb.check_weights(path)
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    with safe_open(str(weights), framework="pt") as f:
        keys = set(f.keys())
        for ours, names in TRANSFORM_KEYS.items():
            found = [HEAD_PREFIX + "transform." + n for n in names if HEAD_PREFIX + "transform." + n in keys]
            if found:
                out["transform." + ours] = f.get_tensor(found[0])
        if HEAD_PREFIX + "bias" in keys:
            out["bias"] = f.get_tensor(HEAD_PREFIX + "bias")
    return out, weights


class VLM(nn.Module):
    def __init__(self, config: VLMConfig, bert: BertModel):
        super().__init__()
        self.config = config
        self.bert = bert
        hidden = bert.config.hidden_size
        self.videomlp = VideoTokenMLP(config.video_dim, hidden)
        self.cls = _Head(bert.config, bert.embeddings.word_embeddings)

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_backbone(
        cls, backbone: str = bb.DEFAULT, seed: int = 0, loss: str = "vlm", init_range: float | None = None
    ) -> VLM:
        """Pretrained BERT (or tiny random) + a freshly initialised video MLP (seeded) + the masked-token head
        as the authors build it: BERT's prediction transform loaded from cls.predictions.transform.* when the
        backbone folder has it (fresh N(0, initializer_range) otherwise, e.g. MiniLM); no vocabulary bias
        for loss=vlm (cls.predictions.bias dropped), BERT's bias loaded for loss=mfm-mlm (zeros when absent).
        What was done is recorded in config.head (and so in vlm_config.json). `init_range` replaces the std of
        every fresh weight (the tiny backbone's too; a folder's pretrained weights are kept)."""
        if loss not in ("vlm", "mfm-mlm"):
            raise InputError(f"loss must be vlm or mfm-mlm, got {loss!r}", path="loss")
        torch.manual_seed(seed)
        bert = bb.load_bert(backbone, init_range)
        config = VLMConfig(backbone=backbone, bert=bert.config.to_diff_dict())
        model = cls(config, bert)
        init = bert.config.initializer_range if init_range is None else init_range
        for module in (model.videomlp, model.cls.predictions.transform):
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=init)
                    nn.init.zeros_(m.bias)
        model._init_head(backbone, loss)
        # from_pretrained hands the BERT back in eval mode: without this a folder backbone (MiniLM, bert-base)
        # pre-trained with dropout off, unlike the authors' fairseq trainer (model.train()) and the tiny one.
        return model.train()

    def _init_head(self, backbone: str, loss: str) -> None:
        found, weights = backbone_head(backbone)
        head = self.cls.predictions
        own = dict(head.named_parameters())
        transform = [k for k in found if k.startswith("transform.")]
        for k in transform:
            if found[k].shape != own[k].shape:
                raise InputError(
                    f"{HEAD_PREFIX}{k} has shape {tuple(found[k].shape)}, the model needs {tuple(own[k].shape)}",
                    path=weights,
                )
        with torch.no_grad():
            if len(transform) == len(TRANSFORM_KEYS):
                for k in transform:
                    own[k].copy_(found[k])
                done = {"transform": f"loaded from {HEAD_PREFIX}transform.* of {weights}"}
            else:
                done = {
                    "transform": f"fresh: N(0, {self.bert.config.initializer_range}) weights, zero biases "
                    f"(the backbone has no complete {HEAD_PREFIX}transform.*)"
                }
            if loss == "vlm":
                head.bias.zero_()
                done["bias"] = (
                    "none: the VLM (MTM) head has no vocabulary bias (cls.predictions.bias dropped, "
                    "as the authors); the zero parameter serves captioning only"
                )
            elif "bias" in found and found["bias"].shape == head.bias.shape:
                head.bias.copy_(found["bias"])
                done["bias"] = f"loaded from {HEAD_PREFIX}bias of {weights} (loss=mfm-mlm keeps BERT's MLM bias)"
            else:
                head.bias.zero_()
                done["bias"] = f"zeros: loss=mfm-mlm keeps an MLM bias, but the backbone has no {HEAD_PREFIX}bias"
        self.config.head = {**done, "loss": loss}

    def save(self, folder: str | Path) -> Path:
        """JSON config + safetensors (the tied decoder is stored once, as the word embeddings)."""
        folder = Path(folder)
        state = {
            k: v.detach().contiguous().cpu()
            for k, v in self.state_dict().items()
            if k != "cls.predictions.word_embeddings.weight"
        }
        atomic_write(folder / WEIGHTS_FILE, lambda p: save_file(state, str(p)))
        write_json(folder / CONFIG_FILE, asdict(self.config))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> VLM:
        """No pickle: config from JSON, tensors from safetensors; the key set must match exactly."""
        folder = Path(folder)
        cfg_path, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        if not cfg_path.is_file() or not weights.is_file():
            raise InputError(f"not a vlmbench checkpoint (needs {CONFIG_FILE} and {WEIGHTS_FILE})", path=folder)
        config = _read_config(cfg_path)  # every field checked: one line naming the file and the key
        try:
            bert_cfg = BertConfig(**config.bert)
        except Exception as e:  # transformers' own checks (strict dataclass errors, id2label keys, ...)
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
            raise InputError(f"key 'bert': not a BERT config ({lines[-1]})", path=cfg_path) from None
        bert_cfg._attn_implementation = "sdpa"
        state = read_safetensors(weights)  # never a pickle: anything else is refused in one line
        if "bert.embeddings.word_embeddings.weight" not in state:
            raise InputError("checkpoint has no bert.embeddings.word_embeddings.weight", path=weights)
        state["cls.predictions.word_embeddings.weight"] = state["bert.embeddings.word_embeddings.weight"]
        # The config's shapes against the weights' before any memory is allocated (a config saying hidden_size
        # 10**9 or 10**6 layers must not try to build that model): the sizes that set the model's size first,
        # then every tensor of the model built on the meta device.
        _check_sizes(bert_cfg, state, weights)
        try:
            with torch.device("meta"):
                shapes = {
                    k: tuple(v.shape)
                    for k, v in cls(config, BertModel(bert_cfg, add_pooling_layer=False)).state_dict().items()
                }
        except (ValueError, TypeError, KeyError, RuntimeError) as e:
            raise InputError(
                f"config does not make a model ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                path=cfg_path,
            ) from None
        for key, shape in shapes.items():
            if key in state and tuple(state[key].shape) != shape:
                raise InputError(
                    f"checkpoint does not fit its config ({key} is {tuple(state[key].shape)}, the config makes "
                    f"{shape})",
                    path=weights,
                )
        model = cls(config, BertModel(bert_cfg, add_pooling_layer=False))
        load_exactly(model, state, weights)
        return model

    # ---- what it is ---------------------------------------------------------------------------------------
    def backbone_note(self) -> str | None:
        """'MiniLM-L6 (paper: bert-base-uncased)' unless the BERT has bert-base's shape (12 layers, hidden 768,
        12 heads, the 30,522-word uncased vocabulary): every result says which backbone stands in."""
        b = {**BertConfig().to_dict(), **self.config.bert}
        if (b["num_hidden_layers"], b["hidden_size"], b["num_attention_heads"], b["vocab_size"]) == (
            12,
            768,
            12,
            30522,
        ):
            return None
        name = {bb.DEFAULT: "MiniLM-L6", bb.TINY: "tiny random BERT"}.get(self.config.backbone)
        if name is None:
            name = Path(self.config.backbone).name or self.config.backbone
        return (
            f"{name} ({b['num_hidden_layers']} layers, hidden {b['hidden_size']}) "
            if name != "MiniLM-L6"
            else f"{name} "
        ) + "(paper: bert-base-uncased)"

    # ---- forward ------------------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.bert.config.hidden_size

    def video_tokens(self, video: torch.Tensor) -> torch.Tensor:
        return self.videomlp(video)

    def embed(self, video_tokens: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings (before position/type/LayerNorm): [CLS] video [SEP] text-slots."""
        b = text_ids.shape[0]
        words = self.bert.embeddings.word_embeddings
        special = words(torch.tensor([self.cls_id, self.sep_id], device=text_ids.device))
        cls_e = special[0].expand(b, 1, -1)
        sep_e = special[1].expand(b, 1, -1)
        return torch.cat([cls_e, video_tokens.to(sep_e.dtype), sep_e, words(text_ids)], dim=1)

    @property
    def cls_id(self) -> int:
        return 101  # [CLS] in the bert-base-uncased vocabulary every backbone here shares

    @property
    def sep_id(self) -> int:
        return 102

    def forward(
        self,
        video: torch.Tensor,
        vmask: torch.Tensor,
        text_ids: torch.Tensor,
        text_mask: torch.Tensor,
        mask: str = "joint",
        video_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last-layer hidden states (B, 96, H).

        video (B, 32, 512) with invalid/masked seconds already zeroed; vmask (B, 32) valid seconds;
        text_ids (B, 62) = t1..tn [SEP] [PAD]...; text_mask (B, 62) non-pad slots.
        `video_tokens` lets the pre-training loss reuse the MLP output it also needs as NCE targets.
        """
        b = text_ids.shape[0]
        if video_tokens is None:
            video_tokens = self.video_tokens(video)
        embeds = self.embed(video_tokens, text_ids)
        attn = masks.BUILDERS[mask](vmask, text_mask, dtype=embeds.dtype)
        out = self.bert(
            inputs_embeds=embeds,
            attention_mask=attn,
            position_ids=position_ids(b, text_ids.device),
            token_type_ids=token_type_ids(b, text_ids.device),
        )
        return out.last_hidden_state

    # ---- isolated halves (fine-tuning and evaluation) -------------------------------------------------------
    # Under the isolated mask video rows see only video + video-[SEP] and text rows only the text, so each
    # half can run alone on its own positions (same position ids and token types) with identical states:
    # 33 positions for a video, 62 for a text, instead of 96 for every pair.
    def forward_video(self, video: torch.Tensor, vmask: torch.Tensor) -> torch.Tensor:
        """(B, 33, H): states of the video slots and the video-[SEP], as in an isolated full forward.

        In evaluation (`packs()`) only the valid seconds and the [SEP] are run (`encode_packed`): their states
        equal the padded layout's up to float rounding; the slots of invalid seconds, which nothing may read
        (VideoStates: "unspecified"), are then zero."""
        if self.packs():
            return self._forward_video_packed(video, vmask.bool())
        b = video.shape[0]
        tokens = self.video_tokens(video)
        sep = self.bert.embeddings.word_embeddings.weight[self.sep_id].expand(b, 1, -1)
        embeds = torch.cat([tokens.to(sep.dtype), sep], dim=1)
        keys = torch.cat([vmask.bool(), torch.ones(b, 1, dtype=torch.bool, device=vmask.device)], dim=1)
        return self._run(embeds, keys, start=VIDEO_START)

    def forward_text(self, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """(B, 62, H): states of the text slots, as in an isolated full forward."""
        embeds = self.bert.embeddings.word_embeddings(text_ids)
        return self._run(embeds, text_mask.bool(), start=TEXT_START)

    def _run(self, embeds: torch.Tensor, keys: torch.Tensor, start: int) -> torch.Tensor:
        b, n = embeds.shape[:2]
        pos = position_ids(b, embeds.device)[:, start : start + n]
        types = token_type_ids(b, embeds.device)[:, start : start + n]
        attn = torch.zeros(b, 1, n, n, dtype=embeds.dtype, device=embeds.device)
        attn.masked_fill_(~keys[:, None, None, :], torch.finfo(embeds.dtype).min)
        return self.bert(
            inputs_embeds=embeds, attention_mask=attn, position_ids=pos, token_type_ids=types
        ).last_hidden_state

    # ---- packed evaluation: no padding anywhere ---------------------------------------------------------------
    # Under the isolated mask a clip's (or a sentence's) states depend on its own valid tokens only. In evaluation
    # the valid tokens of a whole batch are packed back to back, one row each, sequences of equal length adjacent:
    # every Linear / LayerNorm / GELU of BERT runs once over all packed rows (no padding, one large matmul), and
    # attention runs per run of equal-length sequences, unmasked (every key is valid). Same arithmetic as the
    # padded forward, so the same states up to float rounding (tests/test_models.py).
    def packs(self) -> bool:
        """Whether forward_video and the interface's encode_text take the packed path: eval mode without
        autograd (training keeps the padded forward, its dropout and its exact numbers)."""
        return not self.training and not torch.is_grad_enabled()

    def encode_packed(self, embeds: torch.Tensor, pos: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """(T, H) last-layer states of sequences packed back to back: embeds (T, H) input embeddings, pos (T,)
        their position ids (token type 1 from TEXT_START on), `lengths` the sequence lengths in order (equal
        lengths adjacent, or attention runs once per sequence). Eval-mode BERT: no dropout."""
        bert = self.bert
        emb = bert.embeddings
        types = (pos >= TEXT_START).long()
        x = emb.LayerNorm(embeds + emb.token_type_embeddings(types) + emb.position_embeddings(pos))
        heads = bert.config.num_attention_heads
        hd = bert.config.hidden_size // heads
        runs = _runs(lengths)
        for layer in bert.encoder.layer:
            att = layer.attention.self
            q, k, v = att.query(x), att.key(x), att.value(x)
            ctx = torch.empty_like(q)
            for first, n, length in runs:
                rows = slice(first, first + n * length)
                qb, kb, vb = (t[rows].view(n, length, heads, hd).transpose(1, 2) for t in (q, k, v))
                o = F.scaled_dot_product_attention(qb, kb, vb, scale=hd**-0.5)
                ctx[rows] = o.transpose(1, 2).reshape(n * length, -1)
            h = layer.attention.output(ctx, x)
            x = layer.output(layer.intermediate(h), h)
        return x

    def encode_text_tokens(self, tokens: list[list[int]]) -> torch.Tensor:
        """(B, H) float32 pooled sentence vectors of token-id lists (t1..tn, cut to 61; [SEP] appended): what
        pool_text(forward_text(...)) gives, computed packed (sentences sorted by length, no padding). For
        evaluation (`packs()`)."""
        dev = self.bert.embeddings.word_embeddings.weight.device
        seqs = [list(t)[:MAX_TEXT_TOKENS] + [self.sep_id] for t in tokens]
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        lengths = [len(seqs[i]) for i in order]
        if not seqs:
            return torch.zeros(0, self.hidden_size, device=dev)
        ids = torch.tensor([tok for i in order for tok in seqs[i]], dtype=torch.long, device=dev)
        pos = torch.cat([torch.arange(TEXT_START, TEXT_START + n, device=dev) for n in lengths])
        states = self.encode_packed(self.bert.embeddings.word_embeddings(ids), pos, lengths)
        pooled = torch.empty(len(seqs), states.shape[-1], dtype=torch.float32, device=dev)
        done = 0
        for first, n, length in _runs(lengths):  # the masked mean over a sentence = the mean of its rows
            block = states[first : first + n * length].view(n, length, -1).float()
            pooled[torch.tensor(order[done : done + n], device=dev)] = block.sum(1) / length
            done += n
        return pooled

    def _forward_video_packed(self, video: torch.Tensor, vmask: torch.Tensor) -> torch.Tensor:
        b, slots = vmask.shape
        dev = video.device
        counts = vmask.sum(1).tolist()
        order = sorted(range(b), key=lambda i: counts[i])
        lengths = [counts[i] + 1 for i in order]  # valid seconds + the [SEP]
        # packed row of every (clip, slot): the clips in `order`, each its valid seconds in order, then its [SEP]
        clip = torch.tensor(order, dtype=torch.long, device=dev)
        valid = torch.cat([vmask[clip], torch.ones(b, 1, dtype=torch.bool, device=dev)], dim=1)  # (B, 33)
        rows, cols = valid.nonzero(as_tuple=True)  # row-major = packed order
        seconds = cols < slots
        sep = self.bert.embeddings.word_embeddings.weight[self.sep_id]
        embeds = sep.expand(len(rows), -1).clone()
        embeds[seconds] = self.video_tokens(video[clip[rows[seconds]], cols[seconds]]).to(sep.dtype)
        states = self.encode_packed(embeds, VIDEO_START + cols, lengths)
        out = states.new_zeros(b, slots + 1, states.shape[-1])
        out[clip[rows], cols] = states
        return out

    # ---- pooling (retrieval / QA / CrossTask) ---------------------------------------------------------------
    @staticmethod
    def pool_video(hidden: torch.Tensor, vmask: torch.Tensor) -> torch.Tensor:
        """Masked mean over the valid video tokens plus the video-[SEP] (the reference's pooled_video).
        hidden: a full (B, 96, H) forward or forward_video's (B, 33, H)."""
        states = hidden[:, VIDEO_START : VIDEO_SEP + 1] if hidden.shape[1] > VIDEO_SEP else hidden
        weights = torch.cat([vmask.float(), torch.ones_like(vmask[:, :1], dtype=torch.float)], dim=1)
        return (states * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)

    @staticmethod
    def pool_text(hidden: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Masked mean over the text tokens plus the final [SEP] (CLS and video-[SEP] excluded).
        hidden: a full (B, 96, H) forward or forward_text's (B, 62, H)."""
        states = hidden[:, TEXT_START:] if hidden.shape[1] > text_mask.shape[1] else hidden
        weights = text_mask.float()
        return (states * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)


def _runs(lengths: list[int]) -> list[tuple[int, int, int]]:
    """(first row, sequences, length) of each run of equal consecutive lengths of packed sequences."""
    runs: list[list[int]] = []
    at = 0
    for length in lengths:
        if runs and runs[-1][2] == length:
            runs[-1][1] += 1
        else:
            runs.append([at, 1, length])
        at += length
    return [(a, n, length) for a, n, length in runs]
