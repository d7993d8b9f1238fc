"""Tests for vocabularies, batching, collation and the GloVe loader."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pytest
import torch

from spigot.data import (
    PAD_ID,
    ROOT_ID,
    UNK_ID,
    BucketIterator,
    LabelVocab,
    Sentence,
    UnknownLabelError,
    Vocab,
    bucket_batches,
    collate,
    generate_treebank,
    load_glove,
    read_conllu,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


# --------------------------------------------------------------------------- vocab


def test_vocab_specials_min_freq_and_unknowns():
    v = Vocab.build(["b", "a", "a", "c", "c", "c", "rare"], min_freq=2)
    assert v.itos == ["<pad>", "<unk>", "<root>", "c", "a"]
    assert (PAD_ID, UNK_ID, ROOT_ID) == (0, 1, 2)
    assert v["c"] == 3 and v["a"] == 4
    assert v["b"] == UNK_ID and v["never-seen"] == UNK_ID
    assert v.encode(["a", "zzz", "c"]) == [4, 1, 3]
    assert v.decode([3, 4]) == ["c", "a"]
    assert "a" in v and "b" not in v
    assert len(v) == 5


def test_vocab_lowercasing_and_json_round_trip(tmp_path):
    sents = read_conllu(FIXTURES / "tiny.conllu")
    v = Vocab.from_sentences(sents, "words", lower=True)
    assert v["SHE"] == v["she"] != UNK_ID
    p = tmp_path / "v.json"
    v.save(p)
    w = Vocab.load(p)
    assert w == v and w.lower and w.counts == v.counts
    with pytest.raises(ValueError, match="not a LabelVocab JSON object"):
        LabelVocab.load(p)


def test_label_vocab_unknown_label_is_a_clear_error(tmp_path):
    lv = LabelVocab.build(["nsubj", "obj", "obj"])
    assert lv.itos == ["<none>", "obj", "nsubj"]
    assert lv["obj"] == 1
    with pytest.raises(UnknownLabelError, match="unknown label 'iobj'"):
        lv["iobj"]
    with pytest.raises(KeyError):
        lv.encode(["obj", "iobj"])
    mapped = LabelVocab.build(["nsubj", "obj"], unk_label="dep")
    assert mapped["iobj"] == mapped["dep"] == 3
    p = tmp_path / "l.json"
    mapped.save(p)
    assert LabelVocab.load(p) == mapped
    assert LabelVocab.load(p)["unseen"] == 3


# --------------------------------------------------------------------------- collate


def _vocabs(sents):
    return (
        Vocab.from_sentences(sents, "words"),
        Vocab.from_sentences(sents, "pos"),
        LabelVocab.from_deprels(sents),
        LabelVocab.from_arcs(sents),
    )


def test_collate_shapes_and_contents():
    sents = read_conllu(FIXTURES / "tiny.conllu", drop_function_labels=True)
    wv, pv, dv, lv = _vocabs(sents)
    b = collate(sents, wv, pv, deprel_vocab=dv, label_vocab=lv)
    assert b.words.shape == (3, 8) and b.words.dtype == torch.long
    assert b.lengths.tolist() == [5, 7, 5]
    assert (b.words[:, 0] == ROOT_ID).all() and (b.pos[:, 0] == ROOT_ID).all()
    assert b.words[0, 6:].tolist() == [PAD_ID, PAD_ID]
    assert b.words[0, 1].item() == wv["She"]
    assert b.heads[0].tolist() == [0, 2, 0, 4, 2, 2, 0, 0]
    assert b.deprels[0, 2].item() == dv["root"] and b.deprels[0, 0].item() == 0
    assert b.mask[0].tolist() == [False, True, True, True, True, True, False, False]
    assert b.arcs.shape == (3, 8, 8) and b.arcs.dtype == torch.float32
    # s1 arcs: (2,1,nsubj) (4,1,nsubj:xsubj) (0,2,root) (2,4,xcomp)
    expected = torch.zeros(8, 8)
    for h, m in [(2, 1), (4, 1), (0, 2), (2, 4)]:
        expected[h, m] = 1
    assert torch.equal(b.arcs[0], expected)
    assert b.arc_labels[0, 4, 1].item() == lv["nsubj:xsubj"]
    assert b.arc_labels[0, 0, 2].item() == lv["root"]
    assert (b.arc_labels[0][expected == 0] == 0).all()
    assert b.arcs.sum().item() == 4 + 3 + 3


def test_collate_unknown_label_raises_and_no_graph_gives_none():
    sents = read_conllu(FIXTURES / "tiny.conllu")
    wv, pv, _, _ = _vocabs(sents)
    small = LabelVocab(["root"])
    with pytest.raises(UnknownLabelError, match="nsubj"):
        collate(sents, wv, pv, label_vocab=small)
    plain = [Sentence(words=["a", "b"], heads=[0, 1])]
    b = collate(plain, wv, pv)
    assert b.arcs is None and b.arc_labels is None and b.deprels is None
    assert b.words[0].tolist() == [ROOT_ID, UNK_ID, UNK_ID]


# --------------------------------------------------------------------------- buckets


def test_bucket_batches_respects_limits_and_seed():
    lengths = [5, 30, 7, 12, 6, 29, 8, 11, 25, 5, 9, 10] * 5
    batches = bucket_batches(lengths, batch_tokens=100, seed=1)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) == 1 or len(b) * (longest + 1) <= 100
        # buckets group similar lengths
        assert longest - min(lengths[i] for i in b) <= 5
    assert bucket_batches(lengths, batch_tokens=100, seed=1) == batches
    assert bucket_batches(lengths, batch_tokens=100, seed=2) != batches
    by_size = bucket_batches(lengths, batch_size=7, shuffle=False)
    assert [len(b) for b in by_size] == [7] * 8 + [4]
    with pytest.raises(ValueError, match="batch_size"):
        bucket_batches(lengths, batch_size=0)


def test_iterator_epochs_and_too_long_sentences():
    sents = generate_treebank(60, seed=0, min_len=5, max_len=20)
    wv, pv, dv, lv = _vocabs(sents)
    it = BucketIterator(sents, wv, pv, deprel_vocab=dv, label_vocab=lv, batch_size=8, seed=5)
    e0 = [b.indices for b in it]
    e1 = [b.indices for b in it]
    assert sorted(i for b in e0 for i in b) == list(range(60))
    assert e0 != e1 and len(e0) == len(it)
    again = BucketIterator(sents, wv, pv, batch_size=8, seed=5)
    assert [b.indices for b in again] == e0
    longest = max(sents, key=len)
    with pytest.raises(
        ValueError, match=rf"sentence '{longest.sent_id}' .* has {len(longest)} words"
    ):
        BucketIterator(sents, wv, pv, max_length=len(longest) - 1)
    skip = BucketIterator(sents, wv, pv, max_length=10, on_too_long="skip")
    n_long = sum(len(s) > 10 for s in sents)
    assert skip.n_skipped == n_long > 0
    assert sum(len(b) for b in skip) == 60 - n_long


# --------------------------------------------------------------------------- glove


def test_glove_loader_alignment_and_stats(tmp_path):
    p = tmp_path / "g.txt.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write("the 1 2 3\ncat 0 1 0\nCat 9 9 9\n")
    v = Vocab(["the", "cat", "Cat", "dog", "The"], counts={"the": 6, "cat": 2, "dog": 2})
    w, st = load_glove(p, v, seed=0)
    assert w.shape == (len(v), 3) and w.dtype == torch.float32
    assert w[v["the"]].tolist() == [1, 2, 3]
    assert w[v["cat"]].tolist() == [0, 1, 0]
    assert w[v["Cat"]].tolist() == [9, 9, 9]  # exact match wins over lowercase
    assert w[v["The"]].tolist() == [1, 2, 3]  # lowercase fallback
    assert w[PAD_ID].tolist() == [0, 0, 0]
    assert st.n_found == 4 and st.n_found_exact == 3 and st.n_file_words == 3
    assert st.type_coverage == pytest.approx(4 / 5)
    assert st.token_coverage == pytest.approx(8 / 10)
    w2, _ = load_glove(p, v, seed=0)
    assert torch.equal(w, w2)  # random rows are seeded
    w3, _ = load_glove(p, v, seed=1)
    assert not torch.equal(w[v["dog"]], w3[v["dog"]])
    bad = tmp_path / "bad.txt"
    bad.write_text("a 1 2\nb 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected a word and 2 values"):
        load_glove(bad, v)


def test_glove_subset_covers_ewt_dev():
    glove = DATA / "glove-6b-50d-subset" / "glove.6B.50d.sst_ewt.txt.gz"
    ewt = DATA / "ud-english-ewt" / "en_ewt-ud-dev.conllu"
    if not (glove.exists() and ewt.exists()):
        pytest.skip(f"shared data not found under {DATA}")
    v = Vocab.from_sentences(read_conllu(ewt), "words", lower=True)
    w, st = load_glove(glove, v)
    assert w.shape == (len(v), 50) and st.dim == 50 and st.n_file_words == 27930
    assert st.token_coverage > 0.97  # SOURCE.md: 98.7% token coverage of EWT
    assert 0.3 < st.std < 1.0
    unk_std = w[UNK_ID].std().item()
    assert 0.2 < unk_std / st.std < 2.5


# --------------------------------------------------------------------------- import hygiene


def test_only_batching_imports_torch_at_module_level():
    import ast

    import spigot.data as d

    pkg = Path(d.__file__).parent
    for name in ["__init__", "conllu", "sdp", "synthetic", "vocab", "glove", "batching"]:
        tree = ast.parse((pkg / f"{name}.py").read_text(encoding="utf-8"))
        top = set()
        for node in tree.body:  # module level only (glove imports torch inside a function)
            if isinstance(node, ast.Import):
                top |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                top.add((node.module or "").split(".")[0])
        assert ("torch" in top) == (name == "batching"), name


def test_import_spigot_does_not_import_spigot_data():
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / "src" / "spigot" / "__init__.py").exists():
        pytest.skip("src/spigot/__init__.py does not exist yet")
    code = (
        "import sys, spigot; sys.exit(int(any(k.startswith('spigot.data') for k in sys.modules)))"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(root / "src")}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0
