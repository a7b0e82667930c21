"""VideoCLIP (Xu et al., EMNLP 2021): two towers over the same S3D features and text VLM uses.

- video tower: 512-d S3D features (one per second) -> an MLP -> a BERT (the first 6 layers of the text
  backbone) over [CLS] v1..v32 [SEP]; pooled = mean of the valid seconds' states and the [SEP] state;
- text tower: a BERT (all layers) over [CLS] t1..tn [SEP] [PAD]... (63 slots, n <= 61); pooled = mean of the
  token states and the [SEP] state;
- score: the raw dot product of the two pooled vectors (no normalisation, no temperature).

Module names mirror the authors' checkpoint after fairseq's `mmmodel.` prefix (video_encoder.videomlp.*,
video_encoder.bert.*, text_encoder.*), so `vlmbench convert videoclip` is a thin, checkable key mapping.
Saved as a folder: videoclip_config.json (`"model": "videoclip"`) + model.safetensors; never a pickle.

FACTS, read at the source: facebookresearch/fairseq, commit 3d262bb25690e4eb2e7d3c1309b1e9c406ca4b99
(HEAD 2025-09-30; examples/MMPT unchanged since the Oct-2021 release), paths under examples/MMPT/:

| fact | source (file:line) |
|---|---|
| VideoCLIP = MMFusionSeparate, video MMBertForEncoder, text BertModel, num_hidden_video_layers 6 | projects/retri/videoclip.yaml:6-10; projects/retri/videoclip/how2.yaml:53-58 |
| backbone bert-base-uncased; max_video_len 32, max_len 96 (pre-training, zero-shot and fine-tune configs) | projects/retri/videoclip/how2.yaml:3,14-15; test_vtt_zs.yaml:7,13-14 |
| video tower = the text backbone's config with num_hidden_layers = 6, from_pretrained (its first 6 layers) | mmpt/models/mmfusion.py:118-129 |
| text tower = a plain BertModel.from_pretrained(bert_name), all layers | mmpt/models/mmfusion.py:130-133 |
| no seg_embeddings in either tower (use_seg_emb is never set on the separate towers' config) | mmpt/models/mmfusion.py:121-127; mmpt/modules/mm.py:53-58 |
| MMBertForEncoder = videomlp + MMBertModel (a BertModel: embeddings, encoder, pooler) | mmpt/models/transformermodel.py:136-142,161-178,427-435 |
| video MLP: Linear(512, H) -> ACT2FN[hidden_act] -> LayerNorm(H) (torch default eps) -> Linear(H, H) | mmpt/modules/mm.py:32-46 |
| hidden_act "gelu" is F.gelu (exact erf) in transformers 3.4; BERT LayerNorm eps 1e-12 | transformers 3.4.0 activations.py:33-36,54; configuration_bert.py:118,124 |
| video input ids = caps[:, :2] = [CLS] [SEP]; the video tokens are spliced after [CLS] | mmpt/models/mmfusion.py:524; mmpt/modules/mm.py:116-121 |
| video attention mask = [cmask[CLS]=1, vmasks, cmask[SEP]=1]; token types all 0 | mmpt/models/mmfusion.py:526-535; mmpt/processors/processor.py:160-161 |
| video position ids: 0..len(video) for [CLS]+video, then max_video_len+1 for the [SEP] (0..33 for 32 slots) | mmpt/modules/mm.py:94-105 |
| pooled_video = mean over [0 (CLS), vmasks, 1 (SEP)] of the last layer | mmpt/models/mmfusion.py:544,551-570 |
| per-second video states = last layer [:, 1:T+1] (zero-shot COIN, CrossTask, COIN fine-tuning) | mmpt/evaluators/predictor.py:480-482; mmpt/models/mmfusion.py:814,858 |
| text tokens: tokenizer(text, add_special_tokens=False), cut to max_len - max_video_len - 3 = 61 | mmpt/processors/processor.py:61-63,152-153; mmpt/processors/dsprocessor.py:182 |
| caps = [CLS] [SEP] t1..tn [SEP] [PAD]... (64 = max_len - max_video_len), cmasks 1 on all but [PAD] | mmpt/processors/processor.py:154-161 |
| text input = caps without its 2nd slot: [CLS] t1..tn [SEP] [PAD]... (63); mask likewise; token types all 0 | mmpt/models/mmfusion.py:579-591 |
| text position ids: BertModel's default 0..62 (none passed) | mmpt/models/mmfusion.py:593-598 |
| pooled_text = mean over [0 (CLS), cmasks[2:]] = the tokens and the final [SEP] | mmpt/models/mmfusion.py:599-621 |
| forward returns pooled_video, pooled_text; score = their dot product | mmpt/models/mmfusion.py:370-396,84-88 |
| pre-training loss: CE over raw dot products, both directions, no temperature | mmpt/losses/nce.py:76-90 |
| videos: the first max_video_len seconds, zero-filled after, vmasks marks the valid ones | mmpt/processors/processor.py:104-136 |
| fine-tune/test configs: vtt, youcook, vttqa, crosstask, coin (no captioning) | projects/retri/videoretri.yaml:36-50 |

The paper (arXiv 2109.14084 §5.3) says the same: the first 6 BERT layers for video, all 12 for text, video input
34 long, text 61 tokens + [CLS] + [SEP] = 63, average pooling, temperature 1.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import BertConfig, BertModel
from transformers.activations import ACT2FN

from ..errors import InputError
from ..io import atomic_write, load_exactly, read_safetensors, write_json
from . import backbone as bb

MODEL_NAME = "videoclip"
CONFIG_FILE = "videoclip_config.json"
WEIGHTS_FILE = "model.safetensors"

MAX_VIDEO_LEN = 32  # how2.yaml:14
MAX_LEN = 96  # how2.yaml:15
MAX_TEXT_TOKENS = MAX_LEN - MAX_VIDEO_LEN - 3  # 61, processor.py:152
TEXT_SLOTS = MAX_TEXT_TOKENS + 2  # 63: [CLS] t1..t61 [SEP] (mmfusion.py:579-586)
VIDEO_LAYERS = 6  # videoclip.yaml:10

# What the suite can run with VideoCLIP (the authors' fine-tune/test configs, videoretri.yaml:36-50): retrieval
# (MSR-VTT, YouCook2), MSR-VTT multiple-choice QA, COIN segmentation, CrossTask localisation. No captioning:
# VideoCLIP has no decoder and no captioning config.
CAPABILITIES = frozenset({"retrieval", "mcqa", "segmentation", "localization"})


class VideoTokenMLP(nn.Module):
    """S3D feature -> video token: Linear, activation (the BERT's hidden_act), LayerNorm (eps 1e-5), Linear."""

    def __init__(self, input_dim: int, hidden: int, act: str = "gelu"):
        super().__init__()
        self.linear1 = nn.Linear(input_dim, hidden)
        self.LayerNorm = nn.LayerNorm(hidden)  # torch default eps, as mm.py:37
        self.linear2 = nn.Linear(hidden, hidden)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.LayerNorm(ACT2FN[self.act](self.linear1(x))))


class VideoEncoder(nn.Module):
    """The authors' MMBertForEncoder without its (never read) pooler: videomlp + bert."""

    def __init__(self, bert: BertModel, video_dim: int):
        super().__init__()
        self.videomlp = VideoTokenMLP(video_dim, bert.config.hidden_size, bert.config.hidden_act)
        self.bert = bert


@dataclass
class VideoCLIPConfig:
    model: str = MODEL_NAME
    backbone: str = bb.DEFAULT  # whose tokenizer encode_text uses
    video_dim: int = 512
    max_video_len: int = MAX_VIDEO_LEN
    max_text_tokens: int = MAX_TEXT_TOKENS
    special_ids: dict = field(default_factory=lambda: {"cls": 101, "sep": 102, "pad": 0})
    text_bert: dict = field(default_factory=dict)
    video_bert: dict = field(default_factory=dict)
    init: dict = field(default_factory=dict)  # how the towers were initialised (from_backbone)
    source: dict = field(default_factory=dict)  # where converted weights came from (vlmbench convert)


def _bert(config_dict: dict) -> BertModel:
    cfg = BertConfig(**config_dict)
    cfg._attn_implementation = "sdpa"  # takes the 4-D additive float masks built here as they are
    return BertModel(cfg, add_pooling_layer=False)


def _additive(keys: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, N) bool keys -> (B, 1, 1, N) additive mask: 0 where attended, the dtype's minimum elsewhere."""
    mask = torch.zeros(keys.shape[0], 1, 1, keys.shape[1], dtype=dtype, device=keys.device)
    return mask.masked_fill_(~keys[:, None, None, :], torch.finfo(dtype).min)


class VideoCLIP(nn.Module):
    def __init__(self, config: VideoCLIPConfig, video_bert: BertModel, text_bert: BertModel):
        super().__init__()
        if config.model != MODEL_NAME:
            raise InputError(f"not a VideoCLIP config (model={config.model!r})", path="model")
        if video_bert.config.hidden_size != text_bert.config.hidden_size:
            raise InputError("the video and text towers must have the same hidden size", path="video_bert")
        self.config = config
        self.video_encoder = VideoEncoder(video_bert, config.video_dim)
        self.text_encoder = text_bert

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, backbone: str = bb.DEFAULT, seed: int = 0, video_layers: int = VIDEO_LAYERS) -> VideoCLIP:
        """The authors' initialisation on any backbone: the text tower is the backbone; the video tower is the
        backbone's first `video_layers` layers (embeddings included) as a separate copy (mmfusion.py:118-133);
        the video MLP is fresh, N(0, initializer_range) weights and zero biases (BERT's init_weights), seeded.
        A backbone with fewer layers gives the video tower all of them; config.init records what was done."""
        torch.manual_seed(seed)
        text = bb.load_bert(backbone)
        n_text = text.config.num_hidden_layers
        n_video = min(video_layers, n_text)
        video_cfg = copy.deepcopy(text.config)
        video_cfg.num_hidden_layers = n_video
        video = BertModel(video_cfg, add_pooling_layer=False)
        own = video.state_dict()
        video.load_state_dict({k: v for k, v in text.state_dict().items() if k in own}, strict=True)
        tok = bb.tokenizer(backbone)
        config = VideoCLIPConfig(
            backbone=backbone,
            special_ids={"cls": tok.cls_token_id, "sep": tok.sep_token_id, "pad": tok.pad_token_id},
            text_bert=text.config.to_diff_dict(),
            video_bert=video_cfg.to_diff_dict(),
            init={
                "text": f"the backbone's {n_text} layers",
                "video": f"the backbone's first {n_video} of {n_text} layers (the authors take {video_layers})",
                "videomlp": f"fresh: N(0, {text.config.initializer_range}) weights, zero biases, seed {seed}",
            },
        )
        model = cls(config, video, text)
        for m in model.video_encoder.videomlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=text.config.initializer_range)
                nn.init.zeros_(m.bias)
        return model

    def save(self, folder: str | Path) -> Path:
        """JSON config + safetensors, each written atomically."""
        folder = Path(folder)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        atomic_write(folder / WEIGHTS_FILE, lambda p: save_file(state, str(p)))
        write_json(folder / CONFIG_FILE, asdict(self.config))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> VideoCLIP:
        """No pickle: config from JSON, tensors from safetensors; the key set and shapes must match exactly."""
        folder = Path(folder)
        cfg_path, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        if not cfg_path.is_file() or not weights.is_file():
            raise InputError(
                f"not a vlmbench VideoCLIP checkpoint (needs {CONFIG_FILE} and {WEIGHTS_FILE})", path=folder
            )
        try:
            raw = json.loads(cfg_path.read_text())
            config = VideoCLIPConfig(**raw)
        except (ValueError, TypeError) as e:  # ValueError: bad JSON or bytes that are not UTF-8
            raise InputError(f"malformed checkpoint config: {e}", path=cfg_path) from None
        if config.model != MODEL_NAME:
            raise InputError(f'"model" is {config.model!r}, expected {MODEL_NAME!r}', path=cfg_path)
        model = cls(config, _bert(config.video_bert), _bert(config.text_bert))
        state = read_safetensors(weights)  # never a pickle: anything else is refused in one line
        load_exactly(model, state, weights)
        return model

    # ---- what it is ---------------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.text_encoder.config.hidden_size

    @property
    def capabilities(self) -> frozenset[str]:
        return CAPABILITIES

    def backbone_note(self) -> str | None:
        """None for bert-base-uncased towers (12 text layers, 6 video layers, hidden 768); otherwise which
        backbone stands in, e.g. 'MiniLM-L6 (paper: bert-base-uncased)'."""
        t = {**BertConfig().to_dict(), **self.config.text_bert}
        v = {**BertConfig().to_dict(), **self.config.video_bert}
        if (t["num_hidden_layers"], v["num_hidden_layers"], t["hidden_size"], t["num_attention_heads"]) == (
            12,
            VIDEO_LAYERS,
            768,
            12,
        ) and t["vocab_size"] == 30522:
            return None
        name = {bb.DEFAULT: "MiniLM-L6", bb.TINY: "tiny random BERT"}.get(self.config.backbone)
        if name is None:
            name = Path(self.config.backbone).name or self.config.backbone
        return (
            f"{name} ({t['num_hidden_layers']} text / {v['num_hidden_layers']} video layers, hidden "
            f"{t['hidden_size']}) (paper: bert-base-uncased)"
        )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- video tower --------------------------------------------------------------------------------------
    def encode_video(self, video: torch.Tensor, vmask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, T, 512) float (T <= max_video_len; invalid seconds may hold anything), vmask (B, T) bool.
        Returns (tokens (B, T, H): the last layer's per-second states, pooled (B, H))."""
        b, t = video.shape[:2]
        if t > self.config.max_video_len:
            raise InputError(f"video has {t} slots, VideoCLIP takes at most {self.config.max_video_len}")
        bert = self.video_encoder.bert
        mlp = self.video_encoder.videomlp
        tokens = mlp(video.to(mlp.linear1.weight.dtype))
        ids = self.config.special_ids
        special = bert.embeddings.word_embeddings(torch.tensor([ids["cls"], ids["sep"]], device=tokens.device))
        embeds = torch.cat([special[0].expand(b, 1, -1), tokens.to(special.dtype), special[1].expand(b, 1, -1)], dim=1)
        ones = torch.ones(b, 1, dtype=torch.bool, device=vmask.device)
        keys = torch.cat([ones, vmask.bool(), ones], dim=1)
        # [CLS] + video at 0..T, the [SEP] at max_video_len + 1 (mm.py:94-105): 0..33 for 32 slots
        pos = torch.cat(
            [
                torch.arange(t + 1, device=embeds.device),
                torch.tensor([self.config.max_video_len + 1], device=embeds.device),
            ]
        ).expand(b, -1)
        hidden = bert(
            inputs_embeds=embeds,
            attention_mask=_additive(keys, embeds.dtype),
            position_ids=pos,
            token_type_ids=torch.zeros(b, t + 2, dtype=torch.long, device=embeds.device),
        ).last_hidden_state
        weights = keys[:, 1:].to(hidden.dtype)  # the valid seconds and the [SEP]; [CLS] excluded
        pooled = (hidden[:, 1:] * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
        return hidden[:, 1 : t + 1], pooled

    # ---- text tower ---------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The authors' text layout: ids (B, 63) = [CLS] t1..tn [SEP] [PAD]... with n <= 61 word pieces (no
        special tokens from the tokenizer, cut at 61), mask (B, 63) true on [CLS]..[SEP]; on the module's device."""
        if isinstance(texts, str) or not all(isinstance(s, str) for s in texts):
            raise InputError("encode_text takes a list of strings")
        ids = self.config.special_ids
        slots = self.config.max_text_tokens + 2
        pieces = bb.tokenizer(self.config.backbone)(list(texts), add_special_tokens=False)["input_ids"] if texts else []
        out = torch.full((len(pieces), slots), ids["pad"], dtype=torch.long)
        mask = torch.zeros(len(pieces), slots, dtype=torch.bool)
        for i, p in enumerate(pieces):
            row = [ids["cls"], *p[: self.config.max_text_tokens], ids["sep"]]
            out[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = True
        return out.to(self.device), mask.to(self.device)

    def encode_text_ids(self, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Pooled text (B, H) from tokenize()'s layout: the mean of the states of t1..tn and [SEP]."""
        b, n = text_ids.shape
        hidden = self.text_encoder(
            input_ids=text_ids,
            attention_mask=_additive(text_mask.bool(), self.text_encoder.embeddings.word_embeddings.weight.dtype),
            position_ids=torch.arange(n, device=text_ids.device).expand(b, -1),
            token_type_ids=torch.zeros_like(text_ids),
        ).last_hidden_state
        weights = text_mask[:, 1:].to(hidden.dtype)  # [CLS] excluded
        return (hidden[:, 1:] * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Pooled text (B, H) for raw strings, tokenised with the backbone's tokenizer as the authors do."""
        ids, mask = self.tokenize(texts)
        if not len(ids):
            return torch.zeros(0, self.hidden_size, device=self.device)
        return self.encode_text_ids(ids, mask)

    # ---- scoring ------------------------------------------------------------------------------------------
    @staticmethod
    def scores(pooled_text: torch.Tensor, pooled_video: torch.Tensor) -> torch.Tensor:
        """(texts, videos) raw dot products, the authors' retrieval/QA score (mmfusion.py:84-88)."""
        return pooled_text @ pooled_video.T

    def forward(
        self, video: torch.Tensor, vmask: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled_video (B, H), pooled_text (B, H)), as the authors' MMFusionSeparate.forward."""
        return self.encode_video(video, vmask)[1], self.encode_text_ids(text_ids, text_mask)
