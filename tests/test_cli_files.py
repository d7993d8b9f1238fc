"""Commands and the user's files (issue 12): ``predict`` keeps its input and its lines, and
files that are not what a command expects give one-line errors naming them."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from spigot.cli import main
from spigot.data import read_conllu
from spigot.training import atomic_torch_save, load_checkpoint
from test_no_lost_work import _error
from test_training_cli import TINY


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text('task = "syn2sem"\nmode = "spigot"\n\n[data]\nsource = "synthetic"\n')
    return path


# ------------------------------------------------------------------------------------------
# predict
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory, config) -> Path:
    out = tmp_path_factory.mktemp("run") / "spigot"
    args = ["train", str(config), "--set", *TINY, "mode=pipeline", "train.pretrain_epochs=1"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    return out


RICH = """# newdoc id = d1
# text = He didn't go .
# sent_id = s1
# note = after the sent_id
1-2\tdidn't\t_\t_\t_\t_\t_\t_\t_\t_
1\tHe\the\tPRON\tPRP\t_\t3\tnsubj\t3:nsubj\t_
2\tdid\tdo\tAUX\tVBD\t_\t3\taux\t3:aux\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t0:root\tSpaceAfter=No
3.1\tgone\tgo\tVERB\tVB\t_\t_\t_\t3:conj\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t3:punct\t_

# sent_id = s2
1\tShe\tshe\tPRON\tPRP\t_\t2\tnsubj\t2:nsubj|3.1:nsubj\t_
2\truns\trun\tVERB\tVBZ\t_\t0\troot\t0:root\t_
"""


def test_predict_keeps_the_input_lines(run, tmp_path, capsys):
    src = tmp_path / "in.conllu"
    src.write_text(RICH)
    out = tmp_path / "out.conllu"
    ckpt = run / "best.pt"
    assert main(["predict", str(ckpt), "--data", str(src), "--output", str(out)]) == 0
    capsys.readouterr()
    lines, given = out.read_text().splitlines(), RICH.splitlines()
    assert len(lines) == len(given) + 1  # a blank line after the last sentence
    for a, b in zip(lines, given, strict=False):
        ca, cb = a.split("\t"), b.split("\t")
        if len(cb) != 10 or "-" in cb[0]:  # comments, blank and multiword-token lines
            assert a == b
        elif "." in cb[0]:  # empty node: its input edges are not predictions
            assert ca[:8] + ca[9:] == cb[:8] + cb[9:] and ca[8] == "_"
        else:  # word lines: only HEAD, DEPREL and DEPS change
            assert ca[:6] + ca[9:] == cb[:6] + cb[9:] and ca[6].isdigit()
            assert ca[8] == "_" or all(d.split(":")[0].isdigit() for d in ca[8].split("|"))
    pred = read_conllu(out)
    assert [s.sent_id for s in pred] == ["s1", "s2"] and [len(s) for s in pred] == [4, 2]
    # the same file, by name or through a link: refused before anything is written
    for same in (src, tmp_path / "." / "in.conllu"):
        assert main(["predict", str(ckpt), "--data", str(src), "--output", str(same)]) == 1
        assert "would overwrite it" in _error(capsys)
    link = tmp_path / "link.conllu"
    os.link(src, link)
    assert main(["predict", str(ckpt), "--data", str(src), "--output", str(link)]) == 1
    assert "would overwrite it" in _error(capsys)
    assert src.read_text() == RICH


def test_splice_marks_sentences_the_reader_skipped():
    from spigot.data import parse_conllu
    from spigot.data._text import iter_text_lines
    from spigot.data.conllu_splice import splice_conllu

    bad = "# sent_id = cyc\n1\tA\t_\t_\t_\t_\t2\tx\t_\t_\n2\tB\t_\t_\t_\t_\t1\tx\t_\t_\n\n"
    text = bad + RICH
    sents = parse_conllu(text, on_invalid_tree="skip")
    assert [s.sent_id for s in sents] == ["s1", "s2"]
    out = splice_conllu(iter_text_lines(text), sents).splitlines()
    assert out[1].split("\t")[6:9] == ["_", "_", "_"]  # the cyclic sentence: no prediction
    # the gold columns given back as predictions: the same lines, but no arcs of empty nodes
    gold = RICH.replace("\t3:conj\t", "\t_\t").replace("2:nsubj|3.1:nsubj", "2:nsubj")
    assert out[4:] == gold.splitlines() + [""]
    with pytest.raises(ValueError, match="cannot match 1 of 2"):
        splice_conllu(iter_text_lines(RICH.split("\n\n")[0]), sents, source="x.conllu")


# ------------------------------------------------------------------------------------------
# files that are not what a command expects
# ------------------------------------------------------------------------------------------
def test_evaluate_refuses_checkpoints_without_a_model(run, tmp_path, capsys):
    from spigot.pipelines.syn2sem.task import Syn2SemTask

    assert main(["evaluate", str(run / "syntax.pt"), "--data", "synthetic:dev"]) == 1
    err = _error(capsys)
    assert "syntax.pt" in err and "syntactic stage" in err and "best.pt" in err
    task = Syn2SemTask.from_checkpoint(load_checkpoint(run / "best.pt"))
    last = tmp_path / "last.pt"
    atomic_torch_save(task.resume_payload(trainer={}), last)
    assert main(["evaluate", str(last), "--data", "synthetic:dev"]) == 1
    err = _error(capsys)
    assert str(last) in err and "resume checkpoint" in err and "--resume" in err
    out = str(tmp_path / "x.conllu")
    assert main(["predict", str(last), "--data", "synthetic:dev", "--output", out]) == 1
    assert "resume checkpoint" in _error(capsys)
    assert main(["evaluate", str(tmp_path), "--data", "synthetic:dev"]) == 1
    assert "is a directory" in _error(capsys)


def test_bad_files_give_one_line_errors_naming_them(run, config, tmp_path, capsys):
    ckpt = str(run / "best.pt")
    fake_gz = tmp_path / "fake.conllu.gz"
    fake_gz.write_text("1\tA\t_\t_\t_\t_\t0\troot\t_\t_\n")
    latin = tmp_path / "latin.conllu"
    latin.write_bytes("1\tcaf\u00e9\t_\t_\t_\t_\t0\troot\t_\t_\n".encode("latin-1"))
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    zipped = tmp_path / "model.pt.gz"
    zipped.write_bytes(gzip.compress((run / "best.pt").read_bytes()))
    for data in (fake_gz, latin):
        assert main(["evaluate", ckpt, "--data", str(data)]) == 1
        assert str(data) in _error(capsys)
    for bad in (text, zipped):
        assert main(["evaluate", str(bad), "--data", "synthetic:dev"]) == 1
        err = _error(capsys)
        assert str(bad) in err and "not a readable spigot checkpoint" in err
    latin_cfg = tmp_path / "latin.toml"
    latin_cfg.write_bytes('task = "syn2sem"\nname = "caf\u00e9"\n'.encode("latin-1"))
    assert main(["train", str(latin_cfg), "--out", str(tmp_path / "r")]) == 1
    err = _error(capsys)
    assert str(latin_cfg) in err and "UTF-8" in err
    assert main(["train", str(ckpt), "--out", str(tmp_path / "r")]) == 1
    assert ckpt in _error(capsys)
    init = ["train", str(config), "--set", *TINY, f"train.init_syntax={text}"]
    assert main([*init, "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    assert str(text) in _error(capsys)
    assert not (tmp_path / "r").exists()  # nothing written before the checks


def test_init_syntax_mismatch_names_the_config_keys(run, config, tmp_path, capsys):
    syntax = run / "syntax.pt"
    args = ["train", str(config), "--set", *TINY, f"train.init_syntax={syntax}"]
    args += ["model.lstm_hidden=12", "model.mlp_dim=6"]
    assert main([*args, "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    err = _error(capsys)
    assert "model.lstm_hidden is 8 there and 12 here" in err
    assert "model.mlp_dim is 8 there and 6 here" in err and "lstm_layers" not in err
