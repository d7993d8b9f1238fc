"""docs/results/sem2sent/analyze.py on made-up run directories (no data, no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _load import load_script
from spigot.pipelines.syn2sem.outputs import SENTENCES_FILE, write_sentences

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "results" / "sem2sent" / "analyze.py"


@pytest.fixture(scope="module")
def analyze():
    return load_script(SCRIPT, "sem2sent_analyze")


def fake_run(path: Path, correct: dict[str, int], parser: bool, epochs: int = 6) -> None:
    """20 dev and 40 test sentences, the first ``correct[split]`` of them right."""
    n = {"dev": 20, "test": 40}
    records = [
        {"split": split, "index": i, "correct": int(i < correct[split])}
        for split in ("dev", "test")
        for i in range(n[split])
    ]
    path.mkdir(parents=True)
    write_sentences(records, path / SENTENCES_FILE)
    before = {"lf": 0.8, "up": 0.8, "ur": 0.8} if parser else None
    after = {"lf": 0.1, "up": 0.05, "ur": 0.9} if parser else None
    results = {
        **{split: {"acc": correct[split] / n[split]} for split in ("dev", "test")},
        "parser_dev_before": before,
        "parser_dev_after": after,
        "epochs_run": epochs,
        "best_epoch": epochs - 4,
        "cpu_seconds_per_epoch": 30.0,
    }
    (path / "results.json").write_text(json.dumps(results))


@pytest.fixture
def runs(tmp_path):
    for seed in (0, 1):
        fake_run(tmp_path / "spigot" / f"seed{seed}", {"dev": 15, "test": 30 + seed}, True)
        fake_run(tmp_path / "bilstm" / f"seed{seed}", {"dev": 12, "test": 20}, False, epochs=8)
    return tmp_path


def test_tables(analyze, runs):
    md = analyze.tables(analyze.load_runs(runs), resamples=200, seed=0)
    rows: dict[str, str] = {}
    for line in md.splitlines():  # the first table's row of each mode
        rows.setdefault(line.split(" | ")[0].strip("| "), line)
    # spigot: test 75.0 and 77.5 -> 76.2 ± 1.8; parser 80 -> 10 LF, UP 5 / UR 90 after
    assert rows["spigot"] == (
        "| spigot | 2 | 75.0 ± 0.0 | 76.2 ± 1.8 | 80.0 ± 0.0 | 10.0 ± 0.0 | "
        "5.0 ± 0.0 / 90.0 ± 0.0 | 6.0 ± 0.0 | 2.0 ± 0.0 | 30 ± 0 |"
    )
    assert rows["bilstm"].startswith("| bilstm | 2 | 60.0 ± 0.0 | 50.0 ± 0.0 | – | – | – | 8.0")
    # SPIGOT - bilstm on test: +25 and +27.5 points, pooled +26.25; bilstm is secondary
    line = next(x for x in md.splitlines() if x.startswith("| bilstm | 2 | +26.25 ["))
    assert line.endswith("| – | – |")


def test_primary_comparisons_get_holm_and_the_verdict(analyze, tmp_path):
    """Four primary modes; SPIGOT clearly above pipeline and joint (every seed), equal to ste,
    below marginals; Holm multiplies the smallest bootstrap p-value by 4."""
    test = {"spigot": 30, "pipeline": 10, "joint": 12, "ste": 30, "marginals": 38}
    for mode, right in test.items():
        for seed in (0, 1, 2):
            fake_run(tmp_path / mode / f"seed{seed}", {"dev": 10, "test": right + seed}, True)
    md = analyze.tables(analyze.load_runs(tmp_path), resamples=300, seed=0)
    rows = {x.split(" | ")[0].strip("| "): x for x in md.splitlines() if "| 3 | " in x}
    assert rows["pipeline"].endswith("| 0.0133 | SPIGOT better |")  # 4 / 301, Holm x4
    assert rows["joint"].endswith("| SPIGOT better |")
    assert rows["ste"].endswith("| 1.0000 | not established |")
    assert rows["marginals"].endswith("| SPIGOT worse |")


def test_accuracy_must_match_the_results(analyze, runs):
    res = runs / "bilstm" / "seed1" / "results.json"
    data = json.loads(res.read_text())
    data["test"]["acc"] = 0.6
    res.write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="test accuracy"):
        analyze.load_runs(runs)


@pytest.mark.parametrize("name", ["sst", "synthetic"])
def test_committed_accuracy_table_is_recomputed_from_the_committed_runs(analyze, name):
    """The first table of each committed ``analysis.md`` (no resampling in it) is what the
    script computes from the committed per-run files, and on SST every parser-reading mode
    starts from the pre-trained parsers' 65.0 LF (two resumed runs' records were repaired)."""
    root = SCRIPT.parent / name
    md = analyze.tables(analyze.load_runs(root / "runs"), resamples=10, seed=0)

    def first_table(text: str) -> list[str]:
        lines = text.split("## SPIGOT against each mode")[0].splitlines()
        return [line for line in lines if line.startswith("|")]

    committed = first_table((root / "analysis.md").read_text())
    assert len(committed) >= 8 and first_table(md) == committed
    if name == "sst":
        for line in committed[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[4] in ("–", "65.0 ± 0.7"), line
