"""Malformed inputs give one InputError whose message starts with the file and says what is wrong;
plus the generated-file formats that have no public copy (MSR-VTT train and multiple choice)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlmbench.data import coin, crosstask, howto100m, msrvtt, youcook2
from vlmbench.data.features import FeatureStore
from vlmbench.errors import InputError

YC2_OK = {
    "database": {
        "v1": {
            "duration": 10.0,
            "subset": "training",
            "recipe_type": "101",
            "annotations": [{"segment": [1, 4], "id": 0, "sentence": "cut"}],
        }
    }
}
COIN_OK = {
    "database": {
        "v1": {"subset": "testing", "duration": 9.5, "annotation": [{"id": "12", "segment": [1.0, 3.5], "label": "x"}]}
    }
}
TASK_OK = "23521\nMake Jello Shots\nhttp://x\n2\npour water,stir\n\n"
MC_HEADER = "key\tvid_key\tvideo_id\ta1\ta2\ta3\ta4\ta5\tanswer\n"


def _yc2(**ann):
    data = json.loads(json.dumps(YC2_OK))
    data["database"]["v1"]["annotations"][0].update(ann)
    return json.dumps(data)


def _coin(**ann):
    data = json.loads(json.dumps(COIN_OK))
    data["database"]["v1"]["annotation"][0].update(ann)
    return json.dumps(data)


# (file name, content, reader, expected message fragment)
CASES = {
    "h100m csv columns": (
        "v.csv",
        "start,end,text\n0,1,a\n2,3\n",
        howto100m.load_captions,
        "line 3: expected 3 columns, got 2",
    ),
    "h100m csv non-numeric": (
        "v.csv",
        "start,end,text\n0,x,a\n",
        howto100m.load_captions,
        "line 2: end is not a number: 'x'",
    ),
    "h100m csv start>end": ("v.csv", "start,end,text\n5,1,a\n", howto100m.load_captions, "line 2: start 5 > end 1"),
    "h100m csv header": ("v.csv", "begin,end,text\n0,1,a\n", howto100m.load_captions, "expected header start,end,text"),
    "h100m bad json": ("c.json", '{"v": {"start": [0', howto100m.load_captions, "not valid JSON"),
    "h100m json lengths": (
        "c.json",
        '{"v": {"start": [0, 1], "end": [1], "text": ["a"]}}',
        howto100m.load_captions,
        "video v: start/end/text lengths differ (2/1/1)",
    ),
    "h100m json empty": ("c.json", "{}", howto100m.load_captions, "no videos"),
    "msrvtt test columns": (
        "t.csv",
        "key,vid_key,video_id\nr,msr1,video1\n",
        msrvtt.load_retrieval_test,
        "missing column(s) sentence",
    ),
    "msrvtt test short row": (
        "t.csv",
        "key,vid_key,video_id,sentence\nr,msr1,video1\n",
        msrvtt.load_retrieval_test,
        "line 2: expected 4 columns, got 3",
    ),
    "msrvtt mc answer": (
        "mc.csv",
        MC_HEADER + "q\tmsr7\tvideo7\ta\tb\tc\td\te\t5\n",
        msrvtt.load_multiple_choice,
        "line 2: answer '5' is not an index 0..4",
    ),
    "msrvtt mc vid_key": (
        "mc.csv",
        MC_HEADER + "q\tvid7\tvideo7\ta\tb\tc\td\te\t1\n",
        msrvtt.load_multiple_choice,
        "vid_key 'vid7' is not msrNNNN",
    ),
    "yc2 bad json": ("a.json", "{database", youcook2.load_annotations, "not valid JSON"),
    "yc2 fractional segment": (
        "a.json",
        _yc2(segment=[1.5, 4]),
        youcook2.load_annotations,
        "video v1 annotation 0: segment bound 1.5 is not an integer second",
    ),
    "yc2 no sentence": (
        "a.json",
        _yc2(sentence=None),
        youcook2.load_annotations,
        "video v1 annotation 0: expected segment",
    ),
    "yc2 split line": (
        "train_list.txt",
        "101/abc\nxyz\n",
        youcook2.load_split_list,
        "line 2: expected recipe_type/video_id, got 'xyz'",
    ),
    "yc2 retrieval non-numeric": (
        "r.csv",
        "end,start,task,text,video_id\n9,a,101,cut,v1\n",
        youcook2.load_retrieval_test,
        "line 2: start 'a' is not an integer",
    ),
    "yc2 retrieval columns": (
        "r.csv",
        "end,start,text,video_id\n9,1,cut,v1\n",
        youcook2.load_retrieval_test,
        "missing column(s) task",
    ),
    "yc2 retrieval short": (
        "r.csv",
        "end,start,task,text,video_id\n9,1,101,cut\n",
        youcook2.load_retrieval_test,
        "line 2: expected 5 columns",
    ),
    "coin step 900": (
        "coin.json",
        _coin(id="900"),
        coin.load_coin,
        "video v1 annotation 0: step id 900 outside 1..778",
    ),
    "coin negative segment": (
        "coin.json",
        _coin(segment=[-2.0, 3.5]),
        coin.load_coin,
        "video v1 annotation 0: bad segment [-2.0, 3.5] (needs 0 <= start <= end)",
    ),
    "h100m csv negative start": (
        "v.csv",
        "start,end,text\n-1,2,a\n",
        howto100m.load_captions,
        "line 2: start -1 is negative",
    ),
    "h100m json negative start": (
        "c.json",
        '{"v": {"start": [-0.5], "end": [1], "text": ["a"]}}',
        howto100m.load_captions,
        "video v item 0: start -0.5 is negative",
    ),
    "coin step text": ("coin.json", _coin(id="abc"), coin.load_coin, "step id 'abc' is not an integer"),
    # JSON's Infinity: int() raised OverflowError, a traceback (found by make fuzz)
    "coin step infinity": ("coin.json", _coin(id=float("inf")), coin.load_coin, "step id inf is not an integer"),
    "coin segment": ("coin.json", _coin(segment=[1.0, "x"]), coin.load_coin, "is not a finite number"),
    "coin bad json": ("coin.json", "[1, 2", coin.load_coin, "not valid JSON"),
    "ct n_steps": (
        "tasks.txt",
        TASK_OK + "59684\nShelves\nhttp://y\n3\ncut,sand\n\n",
        crosstask.load_tasks,
        "line 11: task 59684 declares 3 steps, lists 2",
    ),
    "ct n_steps text": (
        "tasks.txt",
        "1\nT\nu\nfive\na,b\n",
        crosstask.load_tasks,
        "line 4: number of steps 'five' is not an integer",
    ),
    "ct videos columns": (
        "videos.csv",
        "1,abc,http://u\n1,def\n",
        crosstask.load_videos,
        "line 2: expected 3 columns (task,vid,url), got 2",
    ),
    "ct annotation numbers": (
        "1_v.csv",
        "1,0.5,2\n2,x,3\n",
        crosstask.read_annotation,
        "line 2: expected integer step and numeric start,end",
    ),
    "ct annotation step 0": ("1_v.csv", "0,0.5,2\n", crosstask.read_annotation, "line 1: step 0"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_file_names_file_and_problem(tmp_path, name):
    filename, content, reader, fragment = CASES[name]
    path = tmp_path / filename
    path.write_text(content)
    with pytest.raises(InputError) as e:
        reader(path)
    assert str(e.value).startswith(f"{path}: ")
    assert fragment in str(e.value)


def test_missing_files_and_empty_folder(tmp_path):
    for reader in (
        youcook2.load_annotations,
        coin.load_coin,
        crosstask.load_tasks,
        msrvtt.load_retrieval_test,
        howto100m.load_captions,
    ):
        with pytest.raises(InputError, match="not found"):
            reader(tmp_path / "absent.file")
    with pytest.raises(InputError, match="no caption files"):
        howto100m.load_captions(tmp_path)


def test_annotation_step_above_task_steps(tmp_path):
    path = tmp_path / "1_v.csv"
    path.write_text("3,0,1\n")
    with pytest.raises(InputError, match="step 3 outside 1..2"):
        crosstask.read_annotation(path, n_steps=2)


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.zeros((4, 256), np.float16), "expected width 512, got 256"),
        (np.full((4, 512), np.nan, np.float32), "contains NaN/inf"),
        (np.zeros(512, np.float32), "expected shape (seconds, 512), got (512,)"),
        (np.zeros((4, 512), np.int64), "expected float16 or float32"),
    ],
)
def test_bad_feature_files(tmp_path, array, fragment):
    np.save(tmp_path / "v.npy", array)
    with pytest.raises(InputError) as e:
        FeatureStore(tmp_path).load("v")
    assert str(e.value).startswith(f"{tmp_path / 'v.npy'}: ") and fragment in str(e.value)


def test_unreadable_and_absent_feature_files(tmp_path):
    (tmp_path / "v.npy").write_bytes(b"not numpy")
    store = FeatureStore(tmp_path)
    with pytest.raises(InputError, match="not a readable .npy file"):
        store.n_seconds("v")
    with pytest.raises(InputError, match="no feature file for video 'w'"):
        store.load("w")


def test_howto100m_empty_texts_are_kept(tmp_path):
    (tmp_path / "v.csv").write_text('start,end,text\n0,1,\n1,2,null\n2,3,"a, b"\n')
    (tmp_path / "c.json").write_text('{"w": {"start": [0, 1], "end": [1, 2], "text": [null, NaN]}}')
    assert howto100m.load_captions(tmp_path / "v.csv")["v"].text == ("", "null", "a, b")
    assert howto100m.load_captions(tmp_path / "c.json")["w"].text == ("", "")


# ------------------------------------------- MSR-VTT formats with no public copy here
def _msrvtt_files(tmp_path):
    (tmp_path / "MSRVTT_train.csv").write_text("key,vid_key,video_id\na,msr0,video0\nb,msr1,video1\n")
    (tmp_path / "jsfusion.csv").write_text("key,vid_key,video_id,sentence\nr,msr8,video8,s8\n")
    (tmp_path / "full_test.csv").write_text(
        "key,vid_key,video_id,sentence\nr,msr8,video8,s\nr,msr9,video9,s\nr,msr9,video9,t\n"
    )
    pairs = [(v, k) for v in ["video0", "video1", "video9"] for k in "ab"]
    sentences = [{"video_id": v, "caption": f"{v} {k}", "sen_id": i} for i, (v, k) in enumerate(pairs)]
    data = {"info": {}, "videos": [{"video_id": "video0", "split": "train"}], "sentences": sentences}
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps(data))
    return tmp_path


def test_msrvtt_train_appends_full_test_minus_jsfusion(tmp_path):
    d = _msrvtt_files(tmp_path)
    ids, caps = msrvtt.load_train(d / "MSRVTT_train.csv", d / "MSRVTT_data.json")
    assert ids == ["video0", "video1"] and caps["video1"] == ["video1 a", "video1 b"]
    ids, caps = msrvtt.load_train(
        d / "MSRVTT_train.csv", d / "MSRVTT_data.json", d / "jsfusion.csv", d / "full_test.csv"
    )
    assert ids == ["video0", "video1", "video9"] and set(caps) == set(ids)


def test_msrvtt_train_errors(tmp_path):
    d = _msrvtt_files(tmp_path)
    (d / "MSRVTT_train.csv").write_text("video_id\nvideo0\nvideo5\n")
    with pytest.raises(InputError, match=r"json: 1 training videos have no caption \(first: video5\)"):
        msrvtt.load_train(d / "MSRVTT_train.csv", d / "MSRVTT_data.json")
    (d / "MSRVTT_data.json").write_text('{"sentences": [{"video_id": "video0"}]}')
    with pytest.raises(InputError, match=r"sentences\[0\]: expected string 'video_id' and 'caption'"):
        msrvtt.load_train(d / "MSRVTT_train.csv", d / "MSRVTT_data.json")
    with pytest.raises(InputError, match="pass both"):
        msrvtt.load_train(d / "MSRVTT_train.csv", d / "MSRVTT_data.json", d / "jsfusion.csv")


def test_msrvtt_multiple_choice(tmp_path):
    path = tmp_path / "MSR_MC_test.csv"
    path.write_text(MC_HEADER + 'q0\tmsr7020\tvideo7020\ta man\ta dog\ta cat\tnull\t"quoted"\t3\n')
    [q] = msrvtt.load_multiple_choice(path)
    assert q == msrvtt.McQuestion("video7020", ("a man", "a dog", "a cat", "null", "quoted"), 3)


# ------------------------------------------- real-file robustness: encodings, BOM, quotes, subsets, ids
def test_latin1_caption_csv_is_one_line_naming_file_and_line(tmp_path):
    path = tmp_path / "v.csv"
    path.write_bytes("start,end,text\n0,1,ok\n1,2,café au lait\n".encode("latin-1"))
    with pytest.raises(InputError) as e:
        howto100m.load_captions(path)
    assert str(e.value).startswith(f"{path}: line 3: not UTF-8 text (byte 0xe9") and "\n" not in str(e.value)
    (tmp_path / "c.json").write_bytes('{"v": {"start": [0], "end": [1], "text": ["café"]}}'.encode("latin-1"))
    with pytest.raises(InputError, match="line 1: not UTF-8 text"):
        howto100m.load_captions(tmp_path / "c.json")


UNTERMINATED = {
    "h100m csv": ("v.csv", 'start,end,text\n0,1,"hello\n1,2,world\n2,3,more\n', howto100m.load_captions),
    "msrvtt test": (
        "t.csv",
        'key,vid_key,video_id,sentence\nr,msr1,video1,"a man\nr,msr2,video2,a dog\n',
        msrvtt.load_retrieval_test,
    ),
    "msrvtt closed later": (
        "t.csv",
        'key,vid_key,video_id,sentence\nr,msr1,video1,"a man\nr,msr2,video2,a "dog"\n',
        msrvtt.load_retrieval_test,
    ),
    "yc2 retrieval": (
        "r.csv",
        'end,start,task,text,video_id\n9,1,101,"cut,v1\n9,1,101,cut,v2\n',
        youcook2.load_retrieval_test,
    ),
}


@pytest.mark.parametrize("name", list(UNTERMINATED))
def test_unterminated_quote_is_an_error_not_a_swallowed_file(tmp_path, name):
    filename, content, reader = UNTERMINATED[name]
    path = tmp_path / filename
    path.write_text(content)
    with pytest.raises(InputError) as e:
        reader(path)
    assert str(e.value).startswith(f"{path}: line 2: ") and "unterminated quote" in str(e.value)


def test_byte_order_mark_is_handled(tmp_path):
    bom = "\ufeff"
    (tmp_path / "v.csv").write_text(bom + "start,end,text\n0,1,hi\n", encoding="utf-8")
    assert howto100m.load_captions(tmp_path / "v.csv")["v"].text == ("hi",)
    (tmp_path / "tasks.txt").write_text(bom + TASK_OK, encoding="utf-8")
    assert list(crosstask.load_tasks(tmp_path / "tasks.txt")) == ["23521"]  # not "\ufeff23521"
    (tmp_path / "t.csv").write_text(bom + "video_id,sentence\nvideo1,a man\n", encoding="utf-8")
    assert msrvtt.load_retrieval_test(tmp_path / "t.csv") == [("video1", "a man")]
    (tmp_path / "coin.json").write_text(bom + COIN_OK_JSON, encoding="utf-8")
    assert list(coin.load_coin(tmp_path / "coin.json")) == ["v1"]


COIN_OK_JSON = json.dumps(COIN_OK)


def test_coin_subset_other_than_training_or_testing_is_an_error(tmp_path):
    data = json.loads(COIN_OK_JSON)
    data["database"]["v2"] = dict(data["database"]["v1"], subset="validation")
    path = tmp_path / "coin.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as e:
        coin.load_coin(path)
    assert str(e.value) == f"{path}: video v2: subset 'validation' is neither 'training' nor 'testing'"


def _yc2_key(vid):
    data = json.loads(json.dumps(YC2_OK))
    data["database"][vid] = data["database"].pop("v1")
    return json.dumps(data)


def _coin_key(vid):
    data = json.loads(COIN_OK_JSON)
    data["database"][vid] = data["database"].pop("v1")
    return json.dumps(data)


UNSAFE_IDS = {
    "h100m json": ("c.json", '{"../../etc/x": {"start": [0], "end": [1], "text": ["a"]}}', howto100m.load_captions),
    "h100m csv name": ("..hidden.csv", "start,end,text\n0,1,a\n", howto100m.load_captions),
    "msrvtt test": ("t.csv", "video_id,sentence\n../video1,a man\n", msrvtt.load_retrieval_test),
    "msrvtt backslash": ("t.csv", "video_id,sentence\nvideo1\\..\\x,a man\n", msrvtt.load_retrieval_test),
    "yc2 json": ("a.json", _yc2_key("a/b"), youcook2.load_annotations),
    "yc2 split list": ("train_list.txt", "101/..\n", youcook2.load_split_list),
    "yc2 retrieval": ("r.csv", "end,start,task,text,video_id\n9,1,101,cut,../v1\n", youcook2.load_retrieval_test),
    "coin": ("coin.json", _coin_key("..\\v1"), coin.load_coin),
    "ct videos": ("videos.csv", "23521,../../outside,http://u\n", crosstask.load_videos),
    "ct videos task": ("videos.csv", "../23521,abc,http://u\n", crosstask.load_videos),
    "ct tasks": ("tasks.txt", TASK_OK.replace("23521", "2/3521"), crosstask.load_tasks),
}


@pytest.mark.parametrize("name", list(UNSAFE_IDS))
def test_video_ids_that_name_other_files_are_refused_at_parse_time(tmp_path, name):
    filename, content, reader = UNSAFE_IDS[name]
    path = tmp_path / filename
    path.write_text(content)
    with pytest.raises(InputError) as e:
        reader(path)
    assert "contains '/', '\\' or '..'" in str(e.value) and str(path) in str(e.value)


def test_msrvtt_train_ids_are_checked(tmp_path):
    d = _msrvtt_files(tmp_path)
    (d / "MSRVTT_train.csv").write_text("key,vid_key,video_id\na,msr0,../video0\n")
    with pytest.raises(InputError, match=r"MSRVTT_train.csv: line 2: video id '../video0' contains"):
        msrvtt.load_train(d / "MSRVTT_train.csv", d / "MSRVTT_data.json")


def test_feature_store_refuses_unsafe_ids(tmp_path):
    with pytest.raises(InputError, match="contains '/'"):
        FeatureStore(tmp_path).n_seconds("../v")


def _features(folder, **rows):
    folder.mkdir(exist_ok=True)
    for vid, n in rows.items():
        np.save(folder / f"{vid}.npy", np.ones((n, 512), np.float16))
    return FeatureStore(folder)


def test_pretraining_skips_are_counted_and_reported(tmp_path):
    caps = tmp_path / "captions"
    caps.mkdir()
    (caps / "ok.csv").write_text("start,end,text\n0,2,cut the onion\n30,34,past the end\n")
    (caps / "late.csv").write_text("start,end,text\n12,14,after the end\n")
    (caps / "empty.csv").write_text("start,end,text\n0,1,\n1,2,  \n")
    (caps / "nofeat.csv").write_text("start,end,text\n0,1,hello\n")
    store = _features(tmp_path / "features", ok=10, late=12, empty=5)
    corpus = howto100m.usable(howto100m.load_captions(caps), store)
    assert list(corpus.captions) == ["ok"] and corpus.captions["ok"].text == ("cut the onion",)
    assert corpus.skipped == {
        "videos_no_features": 1,
        "videos_empty_captions": 1,
        "videos_past_features": 1,
        "captions_past_features": 2,
    }
    assert corpus.report() == (
        "skipped 3 of 4 captioned videos: 1 with no feature file, 1 whose captions are all "
        "empty, 1 whose captions all start after its features end; dropped 2 captions that "
        "start after their video's features end"
    )
    with pytest.raises(
        InputError,
        match=r"none of the 1 captioned videos is usable \(skipped 1 of 1 captioned "
        r"videos: 1 whose captions are all empty\)",
    ):
        howto100m.usable({"empty": howto100m.load_captions(caps)["empty"]}, store)


def test_pretraining_finds_nan_in_a_kept_feature_file_by_row(tmp_path):
    caps = tmp_path / "captions"
    caps.mkdir()
    (caps / "a.csv").write_text("start,end,text\n0,2,cut the onion\n")
    (caps / "b.csv").write_text("start,end,text\n0,2,wash the pan\n")
    _features(tmp_path / "features", a=6, b=40)
    arr = np.ones((40, 512), np.float32)
    arr[33, 0] = np.nan  # far past any clip of the one caption
    np.save(tmp_path / "features" / "b.npy", arr)
    with pytest.raises(InputError) as e:
        howto100m.usable(howto100m.load_captions(caps), FeatureStore(tmp_path / "features"))
    assert str(e.value) == f"{tmp_path / 'features' / 'b.npy'}: row 33 contains NaN/inf"


# ------------------------------------------- issue 23: tracebacks and silently accepted inputs, reader side
def _toy(name, tmp_path):
    from vlmbench.data import toy

    return toy.write_dataset(name, tmp_path / name, seed=0)


def test_youcook2_empty_captions_are_refused(tmp_path):
    """All captions empty used to pass the reader and end in a CIDEr traceback at scoring."""
    data = json.loads(json.dumps(YC2_OK))
    data["database"]["v1"]["annotations"][0]["sentence"] = "  "
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as e:
        youcook2.load_annotations(path)
    assert str(e.value) == f"{path}: video v1 annotation 0: empty sentence"


@pytest.mark.parametrize(
    "reader, filename, content, where",
    [
        (
            msrvtt.load_retrieval_test,
            "t.csv",
            "key,vid_key,video_id,sentence\nr,msr1,video1,\n",
            "line 2: empty sentence",
        ),
        (
            youcook2.load_retrieval_test,
            "r.csv",
            "end,start,task,text,video_id\n9,1,101, ,v1\n",
            "line 2: text: empty text",
        ),
        (
            msrvtt.load_multiple_choice,
            "mc.csv",
            MC_HEADER + "q\tmsr7\tvideo7\ta\t\tc\td\te\t1\n",
            "line 2: a2: empty candidate",
        ),
        (crosstask.load_tasks, "tasks.txt", "1\nT\nu\n3\na,,b\n", "line 5: step 2: empty step text"),
    ],
)
def test_empty_test_sentences_are_refused(tmp_path, reader, filename, content, where):
    path = tmp_path / filename
    path.write_text(content)
    with pytest.raises(InputError) as e:
        reader(path)
    assert str(e.value) == f"{path}: {where}"


def test_msrvtt_all_training_captions_empty_are_refused(tmp_path):
    d = _msrvtt_files(tmp_path)
    data = json.loads((d / "MSRVTT_data.json").read_text())
    for s in data["sentences"]:
        s["caption"] = ""
    (d / "MSRVTT_data.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"MSRVTT_data.json: sentences\[0\]: empty caption$"):
        msrvtt.load_train(d / "MSRVTT_train.csv", d / "MSRVTT_data.json")


def test_segments_ending_after_the_videos_duration_are_refused(tmp_path):
    yc2 = json.loads(json.dumps(YC2_OK))
    yc2["database"]["v1"]["annotations"][0]["segment"] = [1, 99999]
    (tmp_path / "a.json").write_text(json.dumps(yc2))
    with pytest.raises(InputError) as e:
        youcook2.load_annotations(tmp_path / "a.json")
    assert str(e.value) == (
        f"{tmp_path / 'a.json'}: video v1 annotation 0: segment [1, 99999] ends after the video's duration 10.0 s"
    )
    (tmp_path / "coin.json").write_text(_coin(segment=[1.0, 99999.0]))
    with pytest.raises(InputError, match=r"coin.json: video v1 annotation 0: segment \[1.0, 99999.0\] ends after"):
        coin.load_coin(tmp_path / "coin.json")
    yc2["database"]["v1"]["duration"] = float("nan")
    (tmp_path / "a.json").write_text(json.dumps(yc2))
    with pytest.raises(InputError, match="duration nan is not a number of seconds"):
        youcook2.load_annotations(tmp_path / "a.json")


def test_spans_past_the_features_are_counted_cut_or_refused(tmp_path):
    """The retrieval test CSV has no duration: its spans are checked against the feature rows. Ending past the
    last row: used up to it, counted and said; starting after it: refused, or left out and counted."""
    store = _features(tmp_path / "features", v1=40, v2=30)
    path = tmp_path / "r.csv"
    path.write_text("end,start,task,text,video_id\n9,1,101,cut it,v1\n99999,2,101,fry it,v1\n10,4,101,mix,v2\n")
    clips = youcook2.load_retrieval_test(path)
    kept, fit = youcook2.fit_to_features(clips, store, path, "test clips")
    assert kept == clips and (fit.cut, fit.dropped) == (1, 0)
    said = []
    counts = {}
    fit.record(counts, said.append)
    assert counts == {"test_clips_cut_at_features_end": 1, "test_clips_past_features_end_dropped": 0}
    assert said == [
        f"{path}: 1 of 3 test clips end past their video's features and are used up to its last feature row "
        "(first: v1_2_99999 [2, 99999], 40 s of features)"
    ]
    path.write_text("end,start,task,text,video_id\n9,1,101,cut it,v1\n99999,50,101,fry it,v1\n10,4,101,mix,v2\n")
    clips = youcook2.load_retrieval_test(path)
    with pytest.raises(InputError) as e:
        youcook2.fit_to_features(clips, store, path, "test clips")
    assert str(e.value).startswith(f"{path}: 1 of the 3 test clips start after their video's features end")
    assert "--allow-missing" in str(e.value)
    kept, fit = youcook2.fit_to_features(clips, store, path, "test clips", allow_missing=True)
    assert [c.clip_id for c in kept] == ["v1_1_9", "v2_4_10"] and fit.counts[
        "test_clips_past_features_end_dropped"
    ] == 1
    # COIN: the same rule on segments; a video keeps its other segments
    (tmp_path / "coin.json").write_text(
        json.dumps(
            {
                "database": {
                    "v1": {
                        "subset": "testing",
                        "duration": 99.0,
                        "annotation": [
                            {"id": "3", "segment": [1.0, 5.0], "label": "a"},
                            {"id": "4", "segment": [45.0, 60.0], "label": "b"},
                            {"id": "5", "segment": [30.0, 60.0], "label": "c"},
                        ],
                    }
                }
            }
        )
    )
    videos = list(coin.load_coin(tmp_path / "coin.json").values())
    with pytest.raises(InputError, match="1 of the 3 test segments start after"):
        coin.fit_to_features(videos, store, tmp_path / "coin.json", "test segments")
    [v], fit = coin.fit_to_features(videos, store, tmp_path / "coin.json", "test segments", allow_missing=True)
    assert [s.step_id for s in v.segments] == [3, 5] and (fit.cut, fit.dropped) == (1, 1)


def test_youcook2_retrieval_reports_clips_past_the_features(tmp_path):
    """Through the task adapter: the count lands in the run's counts and the user is told in one line."""
    from vlmbench import registry
    from vlmbench.adapters.retrieval import RetrievalAdapter
    from vlmbench.config import run_config

    root = tmp_path / "data"
    yc = _toy("youcook2", root)
    lines = (yc / "validation_youcook.csv").read_text().splitlines()
    end, start, *rest = lines[1].split(",")
    lines[1] = ",".join(["99999", start, *rest])
    (yc / "validation_youcook.csv").write_text("\n".join(lines) + "\n")
    spec = registry.get("youcook2-retrieval")
    said = []
    adapter = RetrievalAdapter(spec, run_config(spec, "smoke", []), root, say=said.append)
    adapter.load()
    assert adapter.loaded.counts["test_clips_cut_at_features_end"] == 1
    assert any("1 of" in s and "test clips end past their video's features" in s for s in said)


def test_symlink_loop_in_the_feature_folder_is_one_line(tmp_path):
    from vlmbench.data import prepared
    from vlmbench.data.features import resolve_missing

    store = _features(tmp_path / "features", a=5)
    (tmp_path / "features" / "loop.npy").symlink_to("loop.npy")
    loop = tmp_path / "features" / "loop.npy"
    for call in (
        lambda: store.n_seconds("loop"),
        lambda: store.load("loop"),
        lambda: store.scan("loop"),
        lambda: resolve_missing(["a", "loop"], store, False, "videos"),
        lambda: list(prepared._feature_stats(tmp_path / "features")),
    ):
        with pytest.raises(InputError) as e:
            call()
        assert str(e.value).startswith(f"{loop}: cannot read the feature file (Too many levels of symbolic links")


def test_truncated_predictions_file_is_one_line(tmp_path):
    """`vlmbench score` on a truncated predictions.npz was a BadZipFile traceback."""
    from typer.testing import CliRunner

    from vlmbench.cli import app
    from vlmbench.records.predictions import load_predictions

    path = tmp_path / "predictions.npz"
    meta = {"__task__": np.array("msrvtt-retrieval"), "__config__": np.array('{"ties": "pessimistic"}')}
    np.savez_compressed(path, **meta, ranks=np.arange(1000))  # as runner.save_predictions writes it
    assert load_predictions(path)[0] == "msrvtt-retrieval"
    raw = path.read_bytes()
    for keep in (len(raw) // 2, len(raw) - 30, 40):
        path.write_bytes(raw[:keep])
        with pytest.raises(InputError, match=r"predictions.npz: not a vlmbench predictions file"):
            load_predictions(path)
    path.write_bytes(raw[: len(raw) // 2])
    r = CliRunner().invoke(app, ["score", str(path)])
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "predictions.npz" in lines[0]
    np.save(tmp_path / "plain.npy", np.arange(3))
    with pytest.raises(InputError, match="a single .npy array, not an .npz archive"):
        load_predictions(tmp_path / "plain.npy")
    np.savez(path, __task__=np.array("msrvtt-retrieval"), __config__=np.array("[1]"))
    with pytest.raises(InputError, match="__config__ is not a JSON object"):
        load_predictions(path)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from vlmbench.model.vlm import VLM

    return VLM.from_backbone("tiny", seed=0).save(tmp_path_factory.mktemp("ckpt"))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(source="oops"), "key 'source': expected a JSON object, got 'oops'"),
        (lambda c: c.update(head=[1]), "key 'head': expected a JSON object, got [1]"),
        (lambda c: c.update(bert=None), "key 'bert': expected a JSON object, got None"),
        (lambda c: c.update(backbone=7), "key 'backbone': expected a backbone name or folder, got 7"),
        (
            lambda c: c.update(video_dim="512"),
            "key 'video_dim': expected 512 (the width of the S3D features), got '512'",
        ),
        (lambda c: c.update(hidden=3), "unknown key 'hidden'"),
        (lambda c: c["bert"].update(hidden_size="64"), "key 'bert.hidden_size': expected a positive integer, got '64'"),
        (lambda c: c["bert"].update(num_hidden_layers=0), "key 'bert.num_hidden_layers': expected a positive integer"),
        (lambda c: c["bert"].update(hidden_act="oops"), "key 'bert.hidden_act': expected a transformers activation"),
        (lambda c: c["bert"].update(hidden_dropout_prob=2), "key 'bert.hidden_dropout_prob': expected a probability"),
        (lambda c: c["bert"].update(layer_norm_eps=-1), "key 'bert.layer_norm_eps': expected a positive number"),
        (lambda c: c["bert"].update(num_attention_heads=3), "key 'bert.hidden_size': expected a multiple of"),
        (lambda c: c["bert"].update(pad_token_id=10**6), "key 'bert.pad_token_id': expected below bert.vocab_size"),
        (lambda c: c["bert"].update(is_decoder="no"), "key 'bert.is_decoder': expected true or false, got 'no'"),
        (lambda c: c["bert"].update(hidden_size=2**40), "model.safetensors: checkpoint does not fit its config"),
        (lambda c: c["bert"].update(num_hidden_layers=10**6), "model.safetensors: checkpoint does not fit its config"),
    ],
)
def test_checkpoint_config_fields_are_checked(tmp_path, tiny_ckpt, edit, message):
    """Every field of vlm_config.json: one line naming the file and the key (`"source": "oops"` was a traceback
    in `run`), and sizes are checked against the weights before a model is built."""
    import shutil

    from vlmbench.model.vlm import VLM

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, ckpt)
    cfg = json.loads((ckpt / "vlm_config.json").read_text())
    edit(cfg)
    (ckpt / "vlm_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError) as e:
        VLM.load(ckpt)
    assert message in str(e.value) and str(e.value).startswith(str(ckpt)) and "\n" not in str(e.value)


def test_json_files_are_size_checked_before_parsing(tmp_path):
    """A junk file over the limit of its kind is refused from its size alone: nothing is read."""
    import tracemalloc

    from vlmbench.data import files

    path = tmp_path / "youcookii_annotations_trainval.json"
    with open(path, "wb") as f:
        f.truncate(files.YOUCOOK2_JSON_LIMIT + 1)  # sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as e:
            youcook2.load_annotations(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(e.value) == (
        f"{path}: file is 256.0 MB, over the 256 MB limit for YouCook2 annotations (the real file is ~9 MB): "
        "not the file meant?"
    )
    assert peak < 1 << 20


def test_howto100m_caption_json_is_read_one_video_at_a_time(tmp_path, monkeypatch):
    """caption.json has no size limit (the real one is GBs) but is parsed entry by entry: junk is refused at
    its first bad byte, an entry over its limit when it passes it, never after reading the whole file."""
    import tracemalloc

    from vlmbench.data import files

    path = tmp_path / "captions.json"
    with open(path, "wb") as f:
        f.write(b'{"v": {"start": [0], "end": [1], "text": ["a"]}, ')
        f.truncate(300 << 20)  # then 300 MB of zero bytes
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as e:
            howto100m.load_captions(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(e.value).startswith(f"{path}: not valid JSON (Expecting property name enclosed in double quotes")
    assert peak < 16 << 20
    path.write_text('{"v": {"start": [0], "end": [1], "text": ["' + "a" * 5000 + '"]}}')
    monkeypatch.setattr(files, "CHUNK", 256)  # read in small chunks, so the entry outgrows its limit
    with pytest.raises(InputError, match=r"one entry at line 1 column 7 \(char 6\) is over 1000 bytes"):
        list(files.iter_json_object(path, "{x}", entry_limit=1000))
    assert len(howto100m.load_captions(path)["v"].text[0]) == 5000


@pytest.mark.parametrize(
    "reader, filename, text",
    [
        (howto100m.load_captions, "c.json", '{"v": {"start": [0], "end": [1], "text": ["a"]}, "v": {}}'),
        (youcook2.load_annotations, "a.json", json.dumps(YC2_OK)[:-2] + ', "v1": {}}}'),
        (coin.load_coin, "coin.json", json.dumps(COIN_OK)[:-1] + ', "database": {}}'),
    ],
)
def test_duplicate_json_keys_are_refused(tmp_path, reader, filename, text):
    """json.loads keeps the last of two equal keys: the first video would be dropped without a word."""
    path = tmp_path / filename
    path.write_text(text)
    with pytest.raises(InputError, match=r"key '(v|v1|database)' appears twice in one JSON object"):
        reader(path)


def test_deep_nesting_and_huge_numbers_are_invalid_json(tmp_path):
    path = tmp_path / "coin.json"
    for text, fragment in (("[" * 100_000, "nested too deeply"), ('{"database": ' + "1" * 5000 + "}", "digits")):
        path.write_text(text)
        with pytest.raises(InputError, match=fragment):
            coin.load_coin(path)


# ------------------------------------------- found by tests/test_fuzz_readers.py
@pytest.mark.parametrize(
    "vid, fragment",
    [("v" * 300, "300 characters, too long to name a file"), ("a\nb", "control character"), ("\u202ex", "control")],
)
def test_video_ids_that_cannot_name_a_file_are_refused(tmp_path, vid, fragment):
    """A 5,000-digit id reached the file system as ENAMETOOLONG (an OSError traceback)."""
    from vlmbench.data.files import check_id

    with pytest.raises(InputError, match=fragment):
        check_id(vid, "line 2", tmp_path / "t.csv")
    mc = tmp_path / "mc.csv"
    mc.write_text(MC_HEADER + f"q\tmsr{'7' * 300}\tvideo7\ta\tb\tc\td\te\t1\n")
    with pytest.raises(InputError, match="too long to name a file"):
        msrvtt.load_multiple_choice(mc)


@pytest.mark.parametrize(
    "old, new, fragment",
    [("}", "", "TokenError"), ("(", "(99999999999, ", "mmap length"), ("512", "-512", "OverflowError")],
)
def test_npy_headers_numpy_cannot_parse_are_one_line(tmp_path, old, new, fragment):
    """np.load lets Python's tokenizer error (TokenError) and a negative mmap length (OverflowError) through."""
    np.save(tmp_path / "v.npy", np.zeros((3, 512), np.float16))
    raw = (tmp_path / "v.npy").read_bytes()
    end = raw.index(b"\n") + 1
    (tmp_path / "v.npy").write_bytes(raw[:end].decode("latin-1").replace(old, new, 1).encode("latin-1") + raw[end:])
    with pytest.raises(InputError, match=f"v.npy: not a readable .npy file .*{fragment}"):
        FeatureStore(tmp_path).n_seconds("v")


@pytest.mark.slow
def test_damaged_prepared_corpus_is_one_line(tmp_path):
    """A prepared corpus whose arrays disagree with each other or with the manifest opened, then failed mid-run."""
    from vlmbench.data import prepared, toy

    toy.write_dataset("howto100m", tmp_path / "how", seed=0)
    prep = tmp_path / "prep"
    prepared.prepare(tmp_path / "how", prep, backbone="default")
    assert len(prepared.Prepared.open(prep)) > 0
    ids = np.load(prep / "video_ids.npy")
    np.save(prep / "video_ids.npy", ids[:0])
    with pytest.raises(
        InputError, match=r"video_ids.npy: prepared corpus is damaged \('\|S\d+' \[0\], the manifest says"
    ):
        prepared.Prepared.open(prep)
    (prep / "video_ids.npy").write_bytes(b"")
    with pytest.raises(InputError, match=r"video_ids.npy: prepared corpus is incomplete or damaged \(EOFError"):
        prepared.Prepared.open(prep)
    np.save(prep / "video_ids.npy", ids)
    manifest = json.loads((prep / "manifest.json").read_text())
    manifest["counts"] = {"videos_in": "many"}
    (prep / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"manifest.json: damaged manifest: counts are not all non-negative integers"):
        prepared.Prepared.open(prep)
    assert prepared.read_manifest(prep) is None  # `prepare` makes such a folder again


def test_messages_from_numpy_and_zipfile_are_one_line(tmp_path):
    """numpy's 'header is large' error spans three lines; a flipped bit can mark a zip member as encrypted
    (zipfile's RuntimeError). Both are one InputError line."""
    from vlmbench.records.predictions import load_predictions

    np.save(tmp_path / "v.npy", np.zeros((30, 512), np.float16))
    raw = bytearray((tmp_path / "v.npy").read_bytes())
    raw[9] = 39  # the header length's high byte: a 10 KB header
    (tmp_path / "v.npy").write_bytes(bytes(raw))
    with pytest.raises(InputError) as e:
        FeatureStore(tmp_path).n_seconds("v")
    assert "large and may not be safe" in str(e.value) and len(str(e.value).splitlines()) == 1
    path = tmp_path / "predictions.npz"
    np.savez_compressed(path, __task__=np.array("msrvtt-retrieval"), __config__=np.array("{}"))
    raw = bytearray(path.read_bytes())
    raw[raw.find(b"PK\x01\x02") + 8] |= 1  # the first member's "encrypted" flag, in the central directory
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="predictions.npz: not a vlmbench predictions file .*encrypted"):
        load_predictions(path)
