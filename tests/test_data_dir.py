"""Config data paths follow --data-dir / $SPIGOT_DATA (issue 12): a config written with
../shared/data/ paths reads its files from the directory given."""

from __future__ import annotations

import subprocess
from pathlib import Path

from spigot.data.download.paths import resolve_data_path

ROOT = Path(__file__).resolve().parents[1]

CONLLU = """# sent_id = s1
# text = Dogs bark .
1\tDogs\tdog\tNOUN\tNNS\t_\t2\tnsubj\t2:nsubj\t_
2\tbark\tbark\tVERB\tVBP\t_\t0\troot\t0:root\t_
3\t.\t.\tPUNCT\t.\t_\t2\tpunct\t2:punct\t_

"""


def test_config_paths_resolve_into_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIGOT_DATA", str(tmp_path))
    assert resolve_data_path("../shared/data/sst/train.txt") == tmp_path / "sst" / "train.txt"
    assert resolve_data_path("${data}/x/y.conllu") == tmp_path / "x" / "y.conllu"
    assert resolve_data_path("elsewhere/z.conllu") == Path("elsewhere/z.conllu")


def test_train_reads_the_data_dir(tmp_path):
    data = tmp_path / "mydata" / "ud-english-ewt"
    data.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (data / f"en_ewt-ud-{split}.conllu").write_text(CONLLU * 4, encoding="utf-8")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'task = "syn2sem"\nmode = "pipeline"\n[data]\nsource = "files"\n'
        'train = "../shared/data/ud-english-ewt/en_ewt-ud-train.conllu"\n'
        'dev = "../shared/data/ud-english-ewt/en_ewt-ud-dev.conllu"\n'
        'test = "../shared/data/ud-english-ewt/en_ewt-ud-test.conllu"\n'
        "[model]\nword_dim = 8\npos_dim = 4\nlstm_hidden = 8\nlstm_layers = 1\nmlp_dim = 8\n"
        "label_mlp_dim = 4\ncoupling_dim = 4\n[train]\nepochs = 1\nprogress = false\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [
            "spigot",
            "train",
            str(cfg),
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
            "--data-dir",
            str(tmp_path / "mydata"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "run" / "results.json").is_file()
    missing = subprocess.run(
        [
            "spigot",
            "train",
            str(cfg),
            "--out",
            str(tmp_path / "run2"),
            "--no-progress",
            "--data-dir",
            str(tmp_path / "nothing"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert missing.returncode != 0 and "nothing" in missing.stderr
