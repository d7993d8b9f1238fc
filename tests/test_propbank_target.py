"""Pipeline 1 on a PropBank target, end to end, and the per-sentence scores of a run.

The fixtures are the hand-written UD and PropBank sentences of tests/data/test_propbank.py, put
into small train / dev / test files of several EWT genres; no real data is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _load import load_script
from spigot.cli import main
from spigot.data import Sentence
from spigot.metrics import prf
from spigot.pipelines.syn2sem.data import genre
from spigot.pipelines.syn2sem.outputs import non_tree_arcs, read_sentences, sentence_record

pb = load_script(Path(__file__).parent / "data" / "test_propbank.py", "propbank_fixtures")

TINY = [
    "model.word_dim=8",
    "model.pos_dim=4",
    "model.lstm_hidden=8",
    "model.lstm_layers=1",
    "model.mlp_dim=8",
    "model.label_mlp_dim=8",
    "model.coupling_dim=4",
    "train.epochs=1",
    "train.threads=1",
]

# (genre, document, indices of pb.SENTENCES) of each split; the UD files add unaligned ones
SPLITS = {
    "train": [("answers", "doc1", [0, 1, 2, 3, 4])],
    "dev": [("email", "doc2", [0, 1, 4])],
    "test": [("reviews", "doc3", [0, 1, 2]), ("weblog", "doc4", [4])],
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """``{"train", "dev", "test"}`` CoNLL-U files, the PropBank archive and a config."""
    root = tmp_path_factory.mktemp("propbank")
    members: dict[str, str | bytes] = {}
    files: dict[str, Path] = {}
    for split, docs in SPLITS.items():
        rows = []
        for g, doc, picks in docs:
            skel = pb.skel([pb.SENTENCES[k][1] for k in picks], doc=f"google/ewt/{g}/00/{doc}.xml")
            members[f"data/google/ewt/{g}/00/{doc}.xml.gold_skel"] = skel
            rows += [(f"{g}-{doc}-{i:04d}", pb.SENTENCES[k][0]) for i, k in enumerate(picks, 1)]
        if split == "train":  # a sentence PropBank does not have
            rows.append(("answers-doc1-0006", pb.S4_UD))
        if split == "dev":  # a document PropBank does not have
            rows.append(("email-doc9-0001", pb.S4_UD))
        files[split] = root / f"{split}.conllu"
        files[split].write_text(pb.conllu(rows), encoding="utf-8")
    files["propbank"] = pb.make_tgz(root / "pb.tgz", members)
    files["config"] = root / "propbank.toml"
    files["config"].write_text(
        'task = "syn2sem"\nmode = "spigot"\n\n[data]\nsource = "files"\n'
        f'train = "{files["train"]}"\ndev = "{files["dev"]}"\ntest = "{files["test"]}"\n'
        f'target = "propbank"\npropbank = "{files["propbank"]}"\nbatch_size = 2\n'
    )
    return files


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "spigot"
    args = ["train", str(corpus["config"]), "--set", *TINY, "--out", str(out), "--no-progress"]
    with pytest.warns(UserWarning, match="skipped 1 of"):
        assert main(args) == 0
    return out


def test_a_run_trains_on_propbank_graphs_and_reports_skipped_sentences(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == ["start", "data", "epoch", "final"]
    data = records[1]
    assert data["target"] == "propbank" and data["propbank"].endswith("pb.tgz")
    train, dev, test = (data["splits"][s] for s in ("train", "dev", "test"))
    assert (train["sentences"], train["kept"], train["skipped"]) == (6, 5, {"missing sentence": 1})
    assert train["skipped_ids"] == [["answers-doc1-0006", "missing sentence"]]
    assert train["arcs"] == 5 + 2 + 0 + 0 + 4  # the graphs of tests/data/test_propbank.py
    assert (dev["kept"], dev["skipped"]) == (3, {"no document": 1})
    assert (test["kept"], test["skipped"], test["skipped_ids"]) == (4, {}, [])
    assert records[0]["n_train"] == 5 and records[0]["n_dev"] == 3
    results = json.loads((run / "results.json").read_text())
    assert results["data"]["splits"]["dev"]["skipped"] == {"no document": 1}
    assert "skipped_ids" not in results["data"]["splits"]["train"]  # in the log only
    assert results["sentences"] == "sentences.jsonl.gz"


def test_per_sentence_counts_add_up_to_the_run_scores(run):
    results = json.loads((run / "results.json").read_text())
    recs = read_sentences(run)
    assert [(r["split"], r["sent_id"]) for r in recs] == [
        ("dev", "email-doc2-0001"),
        ("dev", "email-doc2-0002"),
        ("dev", "email-doc2-0003"),
        ("test", "reviews-doc3-0001"),
        ("test", "reviews-doc3-0002"),
        ("test", "reviews-doc3-0003"),
        ("test", "weblog-doc4-0001"),
    ]
    assert [r["genre"] for r in recs if r["split"] == "test"] == ["reviews"] * 3 + ["weblog"]
    # gold arcs: S1, S2, S3 and S5; non-tree ones: (5, 1) of S2, (4, 1) and (4, 2) of S5
    test = [r for r in recs if r["split"] == "test"]
    assert [r["gold"] for r in test] == [5, 2, 0, 4]
    assert [r["nt_gold"] for r in test] == [0, 1, 0, 2]
    assert [r["words"] for r in test] == [r["tokens"] for r in test] == [11, 6, 4, 7]
    for split in ("dev", "test"):
        rs = [r for r in recs if r["split"] == split]

        def total(key: str, rs=rs) -> int:
            return sum(r[key] for r in rs)

        assert prf(total("correct"), total("pred"), total("gold"))[2] == pytest.approx(
            results[split]["lf"]
        )
        assert prf(total("correct_u"), total("pred_u"), total("gold_u"))[2] == pytest.approx(
            results[split]["uf"]
        )
        assert total("heads") / total("tokens") == pytest.approx(results[split]["uas"])


def test_evaluate_reads_the_propbank_target_of_the_checkpoint(run, corpus, capsys):
    args = ["evaluate", str(run / "best.pt"), "--data", str(corpus["test"]), "--json"]
    assert main([*args, "--no-progress"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    results = json.loads((run / "results.json").read_text())
    assert metrics["n_sentences"] == 4
    assert metrics["lf"] == pytest.approx(results["test"]["lf"] or 0.0)


@pytest.mark.filterwarnings("ignore:.*without an aligned PropBank graph")
def test_target_errors(corpus, tmp_path, capsys):
    base = ["train", str(corpus["config"]), "--out", str(tmp_path / "x"), "--set", *TINY]
    assert main([*base, 'data.propbank=""', "--no-progress"]) == 1
    assert "data.propbank must name the PropBank archive" in capsys.readouterr().err
    assert main([*base, "data.source=synthetic", "--no-progress"]) == 1
    assert "needs data.source = 'files'" in capsys.readouterr().err
    assert main([*base, "data.target=deps", "--no-progress"]) == 1
    assert "data.target must be one of 'enhanced', 'propbank'" in capsys.readouterr().err
    sdp = Path(__file__).parent / "fixtures" / "tiny.sdp"
    assert main([*base, f"data.dev={sdp}", "mode=none", "--no-progress"]) == 1
    assert "reads UD EWT CoNLL-U files, not SDP" in capsys.readouterr().err


def test_non_tree_arcs_and_a_sentence_record():
    heads = [2, 0, 2, 3]  # 1 <- 2 -> 3 -> 4, root 2
    arcs = [(2, 1, "A"), (1, 2, "B"), (2, 4, "C"), (0, 2, "TOP"), (0, 3, "TOP"), (4, 1, "D")]
    assert non_tree_arcs(arcs, heads) == [(2, 4, "C"), (0, 3, "TOP"), (4, 1, "D")]
    gold = Sentence(["a", "b", "c", "d"], None, ["X"] * 4, heads, None, arcs, sent_id="email-x-1")
    pred = [(2, 1, "A"), (1, 2, "X"), (2, 4, "C"), (0, 2, "TOP"), (3, 1, "E")]
    rec = sentence_record(gold, pred, [2, 0, 2, 2], split="test", index=7)
    assert rec["split"] == "test" and rec["i"] == 7 and rec["genre"] == "email"
    assert (rec["gold"], rec["pred"], rec["correct"]) == (6, 5, 3)  # (1, 2) has the wrong label
    assert (rec["gold_u"], rec["pred_u"], rec["correct_u"]) == (6, 5, 4)
    assert (rec["nt_gold"], rec["nt_pred"], rec["nt_correct"]) == (3, 2, 1)
    assert (rec["heads"], rec["tokens"]) == (3, 4)
    none = sentence_record(gold, [], None, split="dev", index=0)
    assert none["heads"] is None and none["pred"] == 0 and none["correct"] == 0
    assert genre("weblog-blog.com_x-0001") == "weblog" and genre(None) is None
