"""docs/results/propbank/analyze.py on made-up run directories (no data, no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _load import load_script
from spigot.config import apply_overrides, dump_toml
from spigot.pipelines.syn2sem.config import Syn2SemConfig
from spigot.pipelines.syn2sem.data import GENRES
from spigot.pipelines.syn2sem.outputs import write_sentences

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "results" / "propbank" / "analyze.py"


@pytest.fixture(scope="module")
def analyze():
    return load_script(SCRIPT, "propbank_analyze")


def fake_run(
    path: Path, mode: str, seed: int, correct: dict[str, int], eta: float = 0.0, epochs: int = 9
) -> None:
    """A run directory whose every sentence has 4 gold and 4 predicted arcs, ``correct[split]``
    of them right (1 non-tree arc, right if 3 or more are), and 10 words with 8 right heads."""
    cfg = apply_overrides(
        Syn2SemConfig(), {"mode": mode, "seed": seed, "train.eta": eta, "train.epochs": epochs}
    )
    path.mkdir(parents=True)
    (path / "config.toml").write_text(dump_toml(cfg))
    records, results = [], {}
    for split, n in (("dev", 20), ("test", 30)):
        c = correct[split]
        for i in range(n):
            rec = {"split": split, "i": i, "sent_id": f"{GENRES[i % 5]}-d-{i:04d}", "words": 10}
            rec["genre"] = GENRES[i % 5]
            rec.update(gold=4, pred=4, correct=c, gold_u=4, pred_u=4, correct_u=4)
            nt = int(c >= 3)
            rec.update(nt_gold=1, nt_pred=1, nt_correct=nt, nt_gold_u=1, nt_pred_u=1)
            rec.update(nt_correct_u=1, heads=None if mode == "none" else 8, tokens=10)
            if mode == "none":
                rec["tokens"] = None
            records.append(rec)
        results[split] = {"lf": c / 4, "uf": 1.0, "uas": None if mode == "none" else 0.8}
    write_sentences(records, path / "sentences.jsonl.gz")
    (path / "best.pt").write_bytes(b"weights")
    log = [{"event": "start"}]
    curve = []
    if mode != "none" and epochs:  # the joint modes log their parser's gradients
        for e in range(1, 4):
            log.append({"event": "grad_norms", "phase": "joint", "epoch": e})
            log[-1].update(grad_semantic=0.1 * e, grad_syntactic=0.2, grad_ratio=0.5 * e)
            log[-1]["grad_cosine"] = -0.1
            curve.append({"phase": "joint", "epoch": e, "uas": 0.7 + 0.05 * e})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    stage = {"epochs_run": 7, "best_epoch": 4} if epochs == 0 else None
    results.update(
        mode=mode,
        seed=seed,
        best_epoch=3,
        epochs_run=epochs,
        train_seconds=360.0,
        **({"cpu_seconds_per_epoch": 30.0} if eta else {}),
        syntax_stage=stage,
        curve=curve,
    )
    (path / "results.json").write_text(json.dumps(results))


@pytest.fixture
def experiment(tmp_path) -> Path:
    """pipeline and spigot (2 grid points) with seeds 0-2, none with 0-1, pre-training."""
    out = tmp_path / "experiment"
    for seed in (0, 1, 2):
        fake_run(out / "pretrain" / f"seed{seed}", "pipeline", seed, {"dev": 1, "test": 1}, 0, 0)
        fake_run(out / "pipeline" / f"seed{seed}", "pipeline", seed, {"dev": 2, "test": 2})
        # eta 0.1 wins on dev (and is better than the pipeline on every test sentence)
        fake_run(out / "spigot-eta0" / f"seed{seed}", "spigot", seed, {"dev": 2, "test": 4})
        fake_run(
            out / "spigot-eta0.1" / f"seed{seed}", "spigot", seed, {"dev": 3, "test": 3}, eta=0.1
        )
    for seed in (0, 1):
        fake_run(out / "none" / f"seed{seed}", "none", seed, {"dev": 1, "test": 1})
    (out / "experiment.json").write_text("{}")
    return out


def test_report_tables_and_tests(analyze, experiment, tmp_path, capsys):
    runs = tmp_path / "committed"
    args = [str(runs), "--collect", str(experiment), "--resamples", "300"]
    assert analyze.main([*args, "--out", str(tmp_path / "report.md")]) == 0
    text = capsys.readouterr().out
    assert (tmp_path / "report.md").read_text().strip() == text.strip()
    # collect: the artifacts, never the weights
    assert not list(runs.rglob("*.pt")) and (runs / "experiment.json").is_file()
    assert len(list(runs.rglob("sentences.jsonl.gz"))) == 14
    lines = text.splitlines()

    def row(prefix: str) -> str:
        (found,) = [x for x in lines if x.startswith(prefix)]
        return found

    # per mode: the selected variant, scores in points, mean ± sd over seeds
    assert row("| spigot (eta=0.1) | 3 | 75.0 ± 0.0 | 100.0 ± 0.0 | 80.0 ± 0.0 | 100.0 ± 0.0")
    assert row("| pipeline | 3 | 50.0 ± 0.0")
    assert "| none | 2 | 25.0 ± 0.0 | 100.0 ± 0.0 | – |" in text
    assert row("| spigot (eta=0.1) | 3 | 75.0 ± 0.0 | 80.0 ± 0.0 | yes |")  # the grid, dev
    assert row("| spigot (eta=0) | 3 | 50.0 ± 0.0 | 80.0 ± 0.0 |  |")
    assert "spigot (eta=0) | 3 | 50.0 ± 0.0 | 100.0" not in text  # its test score is not shown
    assert row("| 1 | 7 | 4 | 80.0 | 80.0 |")  # pre-training of seed 1
    assert "| answers (6) | email (6) |" in text
    # training time: 360 s a run; pre-training counts its syntax stage's epochs
    assert row("| pre-training | 3 | 21 | 0.3 | 51 | – |")
    assert row("| spigot (eta=0.1) | 3 | 27 | 0.3 | 40 | 30 (3) |")
    assert row("| total | 14 | 120 | 1.4 | | |")  # 21 + 3 x 27 + 18 epochs
    # the gradient diagnosis: first and best (3) epochs of the joint modes, every variant
    assert row("| spigot (eta=0) | first | 0.1 ± 0 | 0.2 ± 0 | 0.5 ± 0 | -0.1 ± 0 | 75.0 ± 0.0 |")
    assert row("| spigot (eta=0.1) | best | 0.3 ± 0 | 0.2 ± 0 | 1.5 ± 0 | -0.1 ± 0 | 85.0 ± 0.0 |")
    # SPIGOT against the pipeline: +25 LF points on every sentence of every seed
    pooled = row("| pipeline | 3 | +25.00, +25.00, +25.00 | +25.00 [+25.00, +25.00] | 0.2500 |")
    assert pooled.endswith("| 0.0033 | 0.0033 | 0.0033 | SPIGOT better |")  # 1 / (1 + 300)
    assert row("| pipeline | 2 | +25.00 | [+25.00, +25.00] | 0.0033 | 0.0033 |")  # seed 2
    assert row("| none | 2 | +50.00, +50.00 |").endswith("| – | – |")  # common seeds; secondary
    # non-tree LF: every non-tree arc right with spigot (eta 0.1), none with the pipeline
    assert "test non-tree LF" in text and row("| pipeline | 3 | +100.00, +100.00, +100.00 |")


def test_scores_must_match_the_results(analyze, experiment):
    path = experiment / "pipeline" / "seed1" / "results.json"
    results = json.loads(path.read_text())
    results["test"]["lf"] = 0.6
    path.write_text(json.dumps(results))
    with pytest.raises(SystemExit, match="pipeline/seed1: test lf 0.5 != results.json 0.6"):
        analyze.main([str(experiment), "--resamples", "10"])


def test_two_runs_of_one_variant_and_seed_are_refused(analyze, experiment):
    fake_run(experiment / "copy" / "seed2", "pipeline", 2, {"dev": 2, "test": 2})
    with pytest.raises(SystemExit, match="two runs of pipeline with seed 2"):
        analyze.main([str(experiment), "--resamples", "10"])
