"""Malformed inputs give one InputError whose message starts with the file and says what is wrong;
plus the generated-file formats that have no public copy (MSR-VTT train and multiple choice)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vlmbench.data import coin, crosstask, howto100m, msrvtt, youcook2
from vlmbench.data.features import FeatureStore
from vlmbench.errors import InputError

YC2_OK = {"database": {"v1": {"duration": 10.0, "subset": "training", "recipe_type": "101",
                              "annotations": [{"segment": [1, 4], "id": 0, "sentence": "cut"}]}}}
COIN_OK = {"database": {"v1": {"subset": "testing", "duration": 9.5,
                               "annotation": [{"id": "12", "segment": [1.0, 3.5], "label": "x"}]}}}
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
    "h100m csv columns": ("v.csv", "start,end,text\n0,1,a\n2,3\n", howto100m.load_captions,
                          "line 3: expected 3 columns, got 2"),
    "h100m csv non-numeric": ("v.csv", "start,end,text\n0,x,a\n", howto100m.load_captions,
                              "line 2: end is not a number: 'x'"),
    "h100m csv start>end": ("v.csv", "start,end,text\n5,1,a\n", howto100m.load_captions,
                            "line 2: start 5 > end 1"),
    "h100m csv header": ("v.csv", "begin,end,text\n0,1,a\n", howto100m.load_captions,
                         "expected header start,end,text"),
    "h100m bad json": ("c.json", '{"v": {"start": [0', howto100m.load_captions, "not valid JSON"),
    "h100m json lengths": ("c.json", '{"v": {"start": [0, 1], "end": [1], "text": ["a"]}}',
                           howto100m.load_captions, "video v: start/end/text lengths differ (2/1/1)"),
    "h100m json empty": ("c.json", "{}", howto100m.load_captions, "no videos"),
    "msrvtt test columns": ("t.csv", "key,vid_key,video_id\nr,msr1,video1\n",
                            msrvtt.load_retrieval_test, "missing column(s) sentence"),
    "msrvtt test short row": ("t.csv", "key,vid_key,video_id,sentence\nr,msr1,video1\n",
                              msrvtt.load_retrieval_test, "line 2: expected 4 columns, got 3"),
    "msrvtt mc answer": ("mc.csv", MC_HEADER + "q\tmsr7\tvideo7\ta\tb\tc\td\te\t5\n",
                         msrvtt.load_multiple_choice, "line 2: answer '5' is not an index 0..4"),
    "msrvtt mc vid_key": ("mc.csv", MC_HEADER + "q\tvid7\tvideo7\ta\tb\tc\td\te\t1\n",
                          msrvtt.load_multiple_choice, "vid_key 'vid7' is not msrNNNN"),
    "yc2 bad json": ("a.json", "{database", youcook2.load_annotations, "not valid JSON"),
    "yc2 fractional segment": ("a.json", _yc2(segment=[1.5, 4]), youcook2.load_annotations,
                               "video v1 annotation 0: segment bound 1.5 is not an integer second"),
    "yc2 no sentence": ("a.json", _yc2(sentence=None), youcook2.load_annotations,
                        "video v1 annotation 0: expected segment"),
    "yc2 split line": ("train_list.txt", "101/abc\nxyz\n", youcook2.load_split_list,
                       "line 2: expected recipe_type/video_id, got 'xyz'"),
    "yc2 retrieval non-numeric": ("r.csv", "end,start,task,text,video_id\n9,a,101,cut,v1\n",
                                  youcook2.load_retrieval_test, "line 2: start 'a' is not an integer"),
    "yc2 retrieval columns": ("r.csv", "end,start,text,video_id\n9,1,cut,v1\n",
                              youcook2.load_retrieval_test, "missing column(s) task"),
    "yc2 retrieval short": ("r.csv", "end,start,task,text,video_id\n9,1,101,cut\n",
                            youcook2.load_retrieval_test, "line 2: expected 5 columns"),
    "coin step 900": ("coin.json", _coin(id="900"), coin.load_coin,
                      "video v1 annotation 0: step id 900 outside 1..778"),
    "coin step text": ("coin.json", _coin(id="abc"), coin.load_coin, "step id 'abc' is not an integer"),
    "coin segment": ("coin.json", _coin(segment=[1.0, "x"]), coin.load_coin, "is not a finite number"),
    "coin bad json": ("coin.json", "[1, 2", coin.load_coin, "not valid JSON"),
    "ct n_steps": ("tasks.txt", TASK_OK + "59684\nShelves\nhttp://y\n3\ncut,sand\n\n",
                   crosstask.load_tasks, "line 11: task 59684 declares 3 steps, lists 2"),
    "ct n_steps text": ("tasks.txt", "1\nT\nu\nfive\na,b\n", crosstask.load_tasks,
                        "line 4: number of steps 'five' is not an integer"),
    "ct videos columns": ("videos.csv", "1,abc,http://u\n1,def\n", crosstask.load_videos,
                          "line 2: expected 3 columns (task,vid,url), got 2"),
    "ct annotation numbers": ("1_v.csv", "1,0.5,2\n2,x,3\n", crosstask.read_annotation,
                              "line 2: expected integer step and numeric start,end"),
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
    for reader in (youcook2.load_annotations, coin.load_coin, crosstask.load_tasks,
                   msrvtt.load_retrieval_test, howto100m.load_captions):
        with pytest.raises(InputError, match="not found"):
            reader(tmp_path / "absent.file")
    with pytest.raises(InputError, match="no caption files"):
        howto100m.load_captions(tmp_path)


def test_annotation_step_above_task_steps(tmp_path):
    path = tmp_path / "1_v.csv"
    path.write_text("3,0,1\n")
    with pytest.raises(InputError, match="step 3 outside 1..2"):
        crosstask.read_annotation(path, n_steps=2)


@pytest.mark.parametrize("array, fragment", [
    (np.zeros((4, 256), np.float16), "expected width 512, got 256"),
    (np.full((4, 512), np.nan, np.float32), "contains NaN/inf"),
    (np.zeros(512, np.float32), "expected shape (seconds, 512), got (512,)"),
    (np.zeros((4, 512), np.int64), "expected float16 or float32"),
])
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
        "key,vid_key,video_id,sentence\nr,msr8,video8,s\nr,msr9,video9,s\nr,msr9,video9,t\n")
    pairs = [(v, k) for v in ["video0", "video1", "video9"] for k in "ab"]
    sentences = [{"video_id": v, "caption": f"{v} {k}", "sen_id": i} for i, (v, k) in enumerate(pairs)]
    data = {"info": {}, "videos": [{"video_id": "video0", "split": "train"}], "sentences": sentences}
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps(data))
    return tmp_path


def test_msrvtt_train_appends_full_test_minus_jsfusion(tmp_path):
    d = _msrvtt_files(tmp_path)
    ids, caps = msrvtt.load_train(d / "MSRVTT_train.csv", d / "MSRVTT_data.json")
    assert ids == ["video0", "video1"] and caps["video1"] == ["video1 a", "video1 b"]
    ids, caps = msrvtt.load_train(d / "MSRVTT_train.csv", d / "MSRVTT_data.json",
                                  d / "jsfusion.csv", d / "full_test.csv")
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
    path.write_text(MC_HEADER + "q0\tmsr7020\tvideo7020\ta man\ta dog\ta cat\tnull\t\"quoted\"\t3\n")
    [q] = msrvtt.load_multiple_choice(path)
    assert q == msrvtt.McQuestion("video7020", ("a man", "a dog", "a cat", "null", "quoted"), 3)
