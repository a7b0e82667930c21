"""The protocol signature (vlmbench.records.signature): signatures differ exactly when a protocol field differs (and
not when only the system measured does: seed, learning rate, weights); the string determines the fields; the
feature source comes from extraction.json; every run's result carries one and `compare` refuses a mismatch."""

from __future__ import annotations

import itertools
import json

import pytest

from vlmbench.config import RunConfig, to_dict
from vlmbench.errors import InputError
from vlmbench.records import signature
from vlmbench.records.result import Result, load_result, save_result

FAMILIES = {
    "retrieval": "youcook2-retrieval",
    "mcqa": "msrvtt-mcqa",
    "captioning": "youcook2-caption",
    "segmentation": "coin-segmentation",
    "localization": "crosstask-supervised",
}
BASE = {"split": "test", "n": 100, "features": "toy", "limit": None, "model": {"name": "vlm", "weights_sha256": "aa"}}

# (family, what changes, the field that must name the difference); None: the signature must not change
CHANGES = [
    ("retrieval", {"cfg": {"ties": "mmpt"}}, "ties"),
    ("retrieval", {"cfg": {"post": "dual-softmax"}}, "post"),
    ("retrieval", {"cfg": {"select": "best-of-epochs"}}, "select"),
    ("retrieval", {"n": 99}, "n"),
    ("retrieval", {"split": "val"}, "split"),
    ("retrieval", {"limit": 10}, "limit"),
    ("retrieval", {"features": "s3d@0123456789ab,fps30,crop224,float16,l2"}, "features"),
    ("retrieval", {"model": {"name": "videoclip"}}, "model"),
    ("retrieval", {"task": "msrvtt-retrieval"}, "task"),
    ("captioning", {"cfg": {"tokenize": "ptb"}}, "tok"),
    ("captioning", {"cfg": {"skip_meteor": True}}, "meteor"),
    ("captioning", {"cfg": {"decode": "greedy"}}, "decode"),
    ("captioning", {"cfg": {"beam": 3}}, "decode"),
    ("captioning", {"cfg": {"length_penalty": 0.6}}, "decode"),
    ("captioning", {"cfg": {"max_new_tokens": 30}}, "decode"),
    ("segmentation", {"cfg": {"stride": 8}}, "windows"),
    ("localization", {"cfg": {"window": 16}}, "windows"),
    # the system measured, not the protocol
    ("retrieval", {"cfg": {"seed": 3}}, None),
    ("retrieval", {"cfg": {"lr": 1e-3, "epochs": 2, "batch_size": 8, "warmup": 0, "dup": 20}}, None),
    ("retrieval", {"cfg": {"post_temperature": 0.05}}, None),  # no dual-softmax: the temperature does nothing
    ("retrieval", {"cfg": {"decode": "greedy", "tokenize": "ptb", "window": 8}}, None),  # not retrieval's keys
    ("retrieval", {"model": {"name": "vlm", "weights_sha256": "bb"}}, None),
    ("captioning", {"cfg": {"ties": "mmpt", "eval_batch_size": 7}}, None),
    ("mcqa", {"cfg": {"max_train": 5, "train_stride": 4}}, None),
]


def make(family: str, task: str | None = None, cfg: dict | None = None, **kw) -> dict[str, str]:
    args = {**BASE, **kw}
    return signature.build(
        task=task or FAMILIES[family], family=family, cfg={**to_dict(RunConfig()), **(cfg or {})}, **args
    )


@pytest.mark.parametrize("family,change,field", CHANGES)
def test_signatures_differ_exactly_when_a_protocol_field_differs(family, change, field):
    a, b = make(family), make(family, **change)
    if field is None:
        assert a == b and signature.to_string(a) == signature.to_string(b)
        assert signature.mismatch(a, b) is None
    else:
        assert signature.to_string(a) != signature.to_string(b)
        assert signature.mismatch(a, b)[0] == field
        assert [k for k in a if a[k] != b.get(k)] == [field]  # that field alone


def test_dual_softmax_temperature_is_part_of_the_protocol():
    a = make("retrieval", cfg={"post": "dual-softmax"})
    b = make("retrieval", cfg={"post": "dual-softmax", "post_temperature": 0.05})
    assert a["post"] == "dual-softmax(T=1)" and b["post"] == "dual-softmax(T=0.05)"
    assert signature.mismatch(a, b)[0] == "post"


def test_the_version_is_recorded_not_enforced():
    a, b = make("mcqa"), make("mcqa", version="9.9.9")
    assert signature.to_string(a) != signature.to_string(b) and signature.mismatch(a, b) is None


def test_string_format_and_that_it_determines_the_fields():
    fields = make("retrieval")
    s = signature.to_string(fields)
    assert s.startswith("vlmbench|task:youcook2-retrieval|split:test|n:100|direction:t2v+v2t|ties:pessimistic|")
    assert "|rk:hit|sim:dot|post:none|select:final|features:toy|model:vlm|limit:none|version:" in s
    # separators inside a value are escaped: no two field sets share a string
    sets = [
        {"task": "t", "model": "a|limit:none"},
        {"task": "t", "model": "a", "limit": "none"},
        {"task": "t", "model": "a%7Climit%3Anone"},
        {"task": "t:model", "x": "a"},
    ]
    strings = [signature.to_string(f) for f in sets]
    assert len(set(strings)) == len(sets)
    for f, g in itertools.combinations(sets, 2):
        assert signature.mismatch(f, g) is not None


def test_every_family_has_its_fields():
    cap = make("captioning")
    assert cap["tok"] == "whitespace" and cap["cider"] == "CIDEr-D,idf=scored-set"
    assert cap["decode"] == "beam5,lp1,max21" and cap["meteor"].startswith("1.5@")
    assert make("captioning", cfg={"decode": "greedy"})["decode"] == "greedy,max21"
    assert make("mcqa")["ties"] == "first-max" and "direction" not in make("mcqa")
    assert make("segmentation")["windows"] == "32s/16s" and make("localization")["recall"] == "macro-tasks"
    assert make("retrieval", model="floor:random")["model"] == "floor:random"


def test_feature_source_from_extraction_json(tmp_path):
    from vlmbench.video import extract

    assert extract.SETTINGS_FILE == signature.EXTRACTION_FILE
    assert signature.feature_source(tmp_path, toy=True) == "toy"
    assert signature.feature_source(tmp_path, toy=False) == "unrecorded"
    weights = tmp_path / "s3d_howto100m.pth"
    weights.write_bytes(b"weights")
    (tmp_path / signature.EXTRACTION_FILE).write_text(json.dumps(extract._settings(weights, 224, True, True)))
    sha = extract.sha256(weights)[:12]
    assert signature.feature_source(tmp_path, toy=False) == f"s3d@{sha},fps30,crop224,float16,l2"
    (tmp_path / signature.EXTRACTION_FILE).write_text(json.dumps(extract._settings(None, 256, False, False)))
    assert signature.feature_source(tmp_path, toy=False) == "s3d@random-init,fps30,crop256,float32"


def test_result_round_trip_and_malformed_signature(tmp_path):
    r = Result(task="msrvtt-mcqa", metrics={"accuracy": 1.0}, signature=signature.record(make("mcqa")))
    back = load_result(save_result(r, tmp_path / "result.json"))
    assert back.signature == r.signature and back.signature_string == signature.to_string(make("mcqa"))
    d = json.loads((tmp_path / "result.json").read_text())
    d["signature"] = {"string": 3}
    with pytest.raises(InputError, match="'signature' must be"):
        Result.from_dict(d)


@pytest.mark.slow
def test_a_run_records_its_signature_and_compare_refuses_another_protocol(tmp_path):
    """A smoke YouCook2 retrieval run: its result carries the signature (toy features, the model, the size), its
    predictions the clips' videos (the bootstrap's unit: video); the same run with dual-softmax is refused."""
    from vlmbench.records.predictions import load_predictions
    from vlmbench.reporting.compare import compare_paths
    from vlmbench.runner import run

    quiet = lambda s: None  # noqa: E731
    a, _ = run("youcook2-retrieval", preset="smoke", out=tmp_path / "a", progress=False, say=quiet)
    f = a.signature["fields"]
    assert (f["task"], f["features"], f["model"], f["post"], f["limit"]) == (
        "youcook2-retrieval",
        "toy",
        "vlm",
        "none",
        "none",
    )
    assert f["n"] == str(a.counts["test_examples"]) and a.signature["string"] == signature.to_string(f)
    _, _, preds = load_predictions(tmp_path / "a" / "predictions.npz")
    assert len(set(preds["example:cluster"])) == a.counts["test_videos"] < a.counts["test_examples"]
    assert "unit: video (" in a.conventions["interval"]
    b, _ = run(
        "youcook2-retrieval", preset="smoke", out=tmp_path / "b", progress=False, say=quiet, pairs=["post=dual-softmax"]
    )
    assert b.signature["fields"]["post"] == "dual-softmax(T=1)" and "dual-softmax" in b.conventions["post"]
    with pytest.raises(InputError, match="signature field post differs"):
        compare_paths(tmp_path / "b", tmp_path / "a")


def test_the_pretraining_result_has_one_too(tmp_path):
    """task pretrain (the CI gate compares its losses): the objective is part of its protocol, the masking rate
    is the system measured."""
    from vlmbench.train.loss_summary import loss_result

    (tmp_path / "log.jsonl").write_text("".join(json.dumps({"loss": 5.0 - i / 10}) + "\n" for i in range(20)))

    def sig(**config):
        info = {"config": {"loss": "vlm", "mmm": 0.5, **config}, "total_steps": 20, "videos": 4, "preset": "ci"}
        return loss_result(tmp_path, {**info, "toy": True}, seed=0).signature["fields"]

    assert sig() == sig(mmm=0.3) and sig()["loss"] == "vlm,mean-first-last-10%" and sig()["n"] == "20"
    assert signature.mismatch(sig(), sig(loss="mfm-mlm"))[0] == "loss"
