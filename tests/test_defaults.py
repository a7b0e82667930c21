"""Every paper hyper-parameter is a default, pinned here (DESIGN.md 'Fixed points from the paper')."""

from vlmbench import registry
from vlmbench.config import PretrainConfig, RunConfig, pretrain_config, run_config
from vlmbench.model import layout
from vlmbench.model.text import MASK_ID
from vlmbench.model.vlm import VLM


def test_sequence_layout():
    assert layout.MAX_LEN == 96 and layout.MAX_VIDEO_LEN == 32
    assert layout.MAX_TEXT_TOKENS == 61 == 96 - 32 - 3
    assert layout.position_ids(1)[0].tolist() == list(range(96))  # CLS+video 0..32, then 33.. (reference)
    types = layout.token_type_ids(1)[0]
    assert types[:34].eq(0).all() and types[34:].eq(1).all()


def test_video_mlp_and_head_structure():
    m = VLM.from_backbone("tiny")
    mlp = m.videomlp
    assert (mlp.linear1.in_features, mlp.linear1.out_features) == (512, m.hidden_size)
    assert mlp.LayerNorm.eps == 1e-5 and mlp.linear2.in_features == m.hidden_size
    # decoder tied to the word embeddings
    assert m.cls.predictions.word_embeddings.weight is m.bert.embeddings.word_embeddings.weight
    names = set(m.state_dict())
    assert {
        "videomlp.linear1.weight",
        "videomlp.LayerNorm.weight",
        "videomlp.linear2.weight",
        "cls.predictions.transform.dense.weight",
        "cls.predictions.transform.LayerNorm.weight",
        "bert.embeddings.word_embeddings.weight",
    } <= names


def test_pretraining_defaults_are_the_papers():
    c = PretrainConfig()
    assert c == pretrain_config("paper")
    assert (c.beta1, c.beta2, c.eps, c.weight_decay) == (0.9, 0.98, 1e-8, 0.0)
    assert (c.lr, c.warmup, c.clip_norm) == (5e-5, 1000, 2.0)
    assert c.lr_decay_steps == 1_000_000  # fairseq polynomial_decay total_num_update
    assert (c.mmm, c.mfm_prob, c.mlm_prob) == (0.5, 0.15, 0.15)
    assert (c.min_text_len, c.max_text_len) == (8, 64)
    assert (c.clips_per_video, c.batch_size, c.epochs) == (32, 256, 15)
    assert c.loss == "vlm" and c.backbone == "default" and MASK_ID == 103
    assert pretrain_config("paper", ["loss=mfm-mlm"]).min_text_len == 10  # the authors' mfmmlm config


def test_lr_schedule_warmup_then_polynomial_decay():
    from vlmbench.train.optim import lr_at

    assert lr_at(0, 5e-5, 1000, 1_000_000) == 5e-5 / 1000
    assert lr_at(999, 5e-5, 1000, 1_000_000) == 5e-5
    assert abs(lr_at(10_000, 5e-5, 1000, 1_000_000) - 5e-5) < 5e-7  # ~constant after warm-up
    assert lr_at(99, 1e-3, 10, 100) == 0.0


def test_finetune_defaults_are_the_papers():
    c = RunConfig()
    assert (c.lr, c.warmup, c.clip_norm, c.beta1, c.beta2) == (5e-5, 122, 2.0, 0.9, 0.98)
    assert (c.window, c.stride, c.train_stride) == (32, 16, 8)
    assert (c.decode, c.beam, c.max_new_tokens, c.length_penalty) == ("beam", 5, 21, 1.0)
    assert c.tokenize == "whitespace"
    # protocol keys (issue 9): replication off, pessimistic ties, the final model reported, unless a recipe says
    assert (c.dup, c.ties, c.select) == (1, "pessimistic", "final")


def test_task_recipes_are_the_references():
    expected = {  # task: (epochs, batch size) from the reference configs
        "msrvtt-retrieval": (10, 256),
        "youcook2-retrieval": (10, 128),
        "msrvtt-mcqa": (5, 128),
        "youcook2-caption": (10, 128),
        "coin-segmentation": (8, 1),
        "crosstask-supervised": (5, 1),
    }
    for task, (epochs, batch) in expected.items():
        cfg = run_config(registry.get(task), "paper")
        assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.warmup) == (epochs, batch, 5e-5, 122), task
    assert run_config(registry.get("crosstask-zeroshot"), "paper").zeroshot
    assert not run_config(registry.get("crosstask-supervised"), "paper").zeroshot
    coin = run_config(registry.get("coin-segmentation"), "paper")
    assert (coin.window, coin.stride, coin.train_stride) == (32, 16, 8)
    assert registry.get("coin-segmentation").options["num_classes"] == 779
    ct = registry.get("crosstask-supervised").options
    assert (ct["n_train"], ct["split_seed"]) == (30, 0)


def test_registry_has_the_seven_tasks():
    assert set(registry.all_tasks()) == {
        "msrvtt-retrieval",
        "youcook2-retrieval",
        "msrvtt-mcqa",
        "coin-segmentation",
        "crosstask-zeroshot",
        "crosstask-supervised",
        "youcook2-caption",
    }
