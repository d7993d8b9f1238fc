"""The table of data sets (:data:`DATASETS`) and the rules that build the derived files.

* where each file comes from: the pinned commits, base URLs and mirrors, and the dataclasses
  :class:`Source`, :class:`Archive`, :class:`FileSpec` and :class:`Dataset`;
* :data:`DATASETS`, built with the SHA-256 sums recorded in ``src/spigot/data/checksums.json``
  (:data:`CHECKSUMS_PATH`, in the directory above this package, shipped as package data);
* the dataset-specific rules: the SST-2 TSV files (:func:`derive_sst2`), the GloVe subset
  (:func:`glove_vocabulary`, :func:`_derive_glove_subset`, :func:`_float32_text`) and the
  deterministic ``.tgz`` of the PropBank files (:func:`_pack_tgz`; fetching those files one by one
  is ``_Run.propbank`` in :mod:`.run`).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import struct
import tarfile
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from .paths import PathLike

CHECKSUMS_PATH = Path(__file__).parent.parent / "checksums.json"
"""``src/spigot/data/checksums.json``: the recorded sums (package data ``data/checksums.json``)."""

EWT_COMMIT = "15d613d8447b3478787d4c278730a1e48a945efb"  # UD English EWT v2.16 (2025-05-10)
PROPBANK_COMMIT = "4abade0b53ce4a181e1d98b3518101c1a44d395a"  # propbank/propbank-release
EWT_BASE = f"https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/{EWT_COMMIT}/"
PROPBANK_BASE = f"https://raw.githubusercontent.com/propbank/propbank-release/{PROPBANK_COMMIT}/"
SST_BASE = "https://nlp.stanford.edu/sentiment/"
GLOVE_BASE = "https://huggingface.co/stanfordnlp/glove/resolve/main/"  # Stanford NLP's own HF org
GLOVE_MIRRORS = ("https://nlp.stanford.edu/data/", "https://downloads.cs.stanford.edu/nlp/data/")


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a remote file lives: ``base + path``, or ``mirror + path`` for each mirror.

    With ``base_url_override`` (``--base-url``) the file is fetched from ``override/path`` only,
    so a local mirror only needs to serve the same relative paths.
    """

    base: str
    path: str
    mirrors: tuple[str, ...] = ()

    def urls(self, override: str | None = None) -> list[str]:
        """The URLs to try, in order."""
        quoted = urllib.parse.quote(self.path)
        if override is not None:
            return [override.rstrip("/") + "/" + quoted]
        return [b + quoted for b in (self.base, *self.mirrors)]


@dataclass(frozen=True)
class Archive:
    """An upstream archive that is downloaded only to take files out of it.

    Attributes:
        filename: its name in ``DIR/.download/``.
        source: where to get it.
        sha256: its checksum, or ``None`` when it is not known (then only the files taken out of
            it are checked, after extraction).
        size: its size in bytes if known (progress display only).
    """

    filename: str
    source: Source
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class FileSpec:
    """One file that :func:`download` writes, and how it is obtained.

    Exactly one of ``source`` (downloaded as is), ``archive`` + ``member`` (extracted) or
    ``derive`` (built by a function of this module, from ``inputs`` and, if given, the archive
    member) says how the file is made.

    Attributes:
        dest: path relative to the data directory.
        sha256: checksum of the file as written (what ``sha256sum`` prints).
        size: its size in bytes, if known.
        source: remote file downloaded as is.
        archive: archive the file (or the input of ``derive``) is taken from.
        member: name of the member inside ``archive``.
        derive: name of the builder: ``"sst2"``, ``"glove_subset"`` or ``"propbank_tgz"``.
        inputs: files of the data directory that ``derive`` reads (they are verified first).
        gunzip_sha256: for ``.gz`` files, checksum of the decompressed content; a file whose
            content matches is accepted even if its compressed bytes differ.
        members: for tar archives, ``{member: sha256}`` of every regular file; an archive with
            exactly these members is accepted even if its own bytes differ.
        parts: for ``propbank_tgz``, where each member is downloaded from (``Source.path`` is the
            member name).
    """

    dest: str
    sha256: str
    size: int | None = None
    source: Source | None = None
    archive: Archive | None = None
    member: str | None = None
    derive: str | None = None
    inputs: tuple[str, ...] = ()
    gunzip_sha256: str | None = None
    gunzip_size: int | None = None
    members: Mapping[str, str] | None = field(default=None, hash=False, compare=False)
    parts: Source | None = None


@dataclass(frozen=True)
class Dataset:
    """A named data set: its files in the order they are made, and what it needs first."""

    name: str
    title: str
    license: str
    origin: str
    files: tuple[FileSpec, ...]
    requires: tuple[str, ...] = ()


def _load_checksums(path: Path = CHECKSUMS_PATH) -> dict[str, dict[str, dict[str, Any]]]:
    with open(path, encoding="utf-8") as f:
        table = json.load(f)
    return {k: v for k, v in table.items() if not k.startswith("_")}


def _spec(sums: Mapping[str, Mapping[str, Any]], dest: str, **kw: Any) -> FileSpec:
    rec = sums[dest]
    return FileSpec(
        dest=dest,
        sha256=rec["sha256"],
        size=rec.get("size"),
        gunzip_sha256=rec.get("gunzip_sha256"),
        gunzip_size=rec.get("gunzip_size"),
        members=rec.get("members"),
        **kw,
    )


def _build_table() -> dict[str, Dataset]:
    ck = _load_checksums()
    ewt = "ud-english-ewt/"
    ewt_files = tuple(
        _spec(ck["ewt"], ewt + f, source=Source(EWT_BASE, f))
        for f in (
            "en_ewt-ud-train.conllu",
            "en_ewt-ud-dev.conllu",
            "en_ewt-ud-test.conllu",
            "README.md",
            "LICENSE.txt",
            "stats.xml",
        )
    )
    sst_zip = Archive("trainDevTestTrees_PTB.zip", Source(SST_BASE, "trainDevTestTrees_PTB.zip"))
    splits = ("train", "dev", "test")
    sst_files = tuple(
        _spec(ck["sst"], f"sst/{s}.txt", archive=sst_zip, member=f"trees/{s}.txt") for s in splits
    ) + tuple(
        _spec(ck["sst"], f"sst/sst2_{s}.tsv", derive="sst2", inputs=(f"sst/{s}.txt",))
        for s in splits
    )
    glove_zip = Archive(
        "glove.6B.zip", Source(GLOVE_BASE, "glove.6B.zip", GLOVE_MIRRORS), size=862_182_613
    )
    glove_inputs = tuple(f"{ewt}en_ewt-ud-{s}.conllu" for s in splits) + tuple(
        f"sst/{s}.txt" for s in splits
    )
    glove_files = (
        _spec(
            ck["glove"],
            "glove-6b-50d-subset/glove.6B.50d.sst_ewt.txt.gz",
            archive=glove_zip,
            member="glove.6B.50d.txt",
            derive="glove_subset",
            inputs=glove_inputs,
        ),
    )
    propbank_files = (
        _spec(
            ck["propbank"],
            "propbank-ewt/propbank-ewt-gold_skel.tgz",
            derive="propbank_tgz",
            parts=Source(PROPBANK_BASE, ""),
        ),
        _spec(ck["propbank"], "propbank-ewt/LICENSE", source=Source(PROPBANK_BASE, "LICENSE")),
    )
    return {
        "ewt": Dataset(
            "ewt",
            "UD English EWT v2.16",
            "CC BY-SA 4.0",
            f"github.com/UniversalDependencies/UD_English-EWT @ {EWT_COMMIT[:8]}",
            ewt_files,
        ),
        "sst": Dataset(
            "sst",
            "Stanford Sentiment Treebank (PTB trees) + derived SST-2",
            "none stated (research use)",
            "nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip",
            sst_files,
        ),
        "glove": Dataset(
            "glove",
            "GloVe 6B 50d, restricted to the words of EWT and SST",
            "PDDL 1.0",
            "glove.6B.zip (Stanford NLP)",
            glove_files,
            requires=("ewt", "sst"),
        ),
        "propbank": Dataset(
            "propbank",
            "PropBank (unified) annotations of EWT, .gold_skel",
            "CC BY-SA 4.0",
            f"github.com/propbank/propbank-release @ {PROPBANK_COMMIT[:8]}",
            propbank_files,
        ),
    }


DATASETS: dict[str, Dataset] = _build_table()
"""name -> :class:`Dataset`, in download order."""


# --- looking names up -----------------------------------------------------------------------------


def _lookup(dest: str) -> FileSpec:
    for ds in DATASETS.values():
        for spec in ds.files:
            if spec.dest == dest:
                return spec
    raise KeyError(f"no dataset writes {dest}")


def _expand(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        for n in DATASETS if name == "all" else [name]:
            if n not in DATASETS:
                known = ", ".join(DATASETS)
                raise ValueError(f"unknown dataset {n!r}: choose among {known} or all")
            if n not in out:
                out.append(n)
    return out


def _with_requirements(names: Iterable[str]) -> list[str]:
    """``names`` with each dataset's requirements before it, each once."""
    out: list[str] = []

    def visit(n: str) -> None:
        for r in DATASETS[n].requires:
            visit(r)
        if n not in out:
            out.append(n)

    for n in names:
        visit(n)
    return out


# --- derived files -------------------------------------------------------------------------------

_SST_LEAF = re.compile(r"\(\d ([^() ]+)\)")


def derive_sst2(trees: PathLike, out: PathLike) -> int:
    """Write the sentence-level binary SST-2 split of a file of SST trees; return its size.

    The documented rule (``docs/data.md``), which reproduces the reference ``sst2_*.tsv`` byte for
    byte: a header ``label<TAB>sentence``; for each tree, root label 0-1 -> ``0``, 3-4 -> ``1``,
    2 (neutral) dropped; the sentence is the leaves (split on ASCII spaces only) joined by single
    spaces, PTB escapes kept.
    """
    n = 0
    with (
        open(trees, encoding="utf-8") as f,
        open(out, "w", encoding="utf-8", newline="\n") as o,
    ):
        o.write("label\tsentence\n")
        for tree in f:
            if not tree.strip():
                continue
            root = int(tree[1])
            if root != 2:
                o.write(f"{int(root > 2)}\t{' '.join(_SST_LEAF.findall(tree))}\n")
                n += 1
    return n


def glove_vocabulary(conllu_files: Iterable[PathLike], sst_files: Iterable[PathLike]) -> set[str]:
    """The words kept in the GloVe subset: lowercased EWT forms and lemmas, and SST leaves.

    The rule that reproduces ``glove.6B.50d.sst_ewt.txt.gz`` (27,930 words) from the full
    ``glove.6B.50d.txt``: FORM and LEMMA of every word line of the CoNLL-U files (integer ids:
    multiword-token lines ``3-4`` and empty nodes ``8.1`` are skipped) and every SST leaf with
    ``\\/`` -> ``/``, all lowercased with :meth:`str.lower`.
    """
    words: set[str] = set()
    for path in conllu_files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                cols = line.rstrip("\n").split("\t")
                if len(cols) >= 3 and cols[0].isdigit():
                    words.add(cols[1].lower())
                    words.add(cols[2].lower())
    for path in sst_files:
        with open(path, encoding="utf-8") as f:
            for tree in f:
                words.update(w.replace("\\/", "/").lower() for w in _SST_LEAF.findall(tree))
    return words


_F32 = struct.Struct("<f")
_SHORT_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?")


def _f32(x: float) -> float:
    return _F32.unpack(_F32.pack(x))[0]


def _float32_text(token: str) -> str:
    """The shortest positional decimal that reads back as the same float32 as ``token``.

    This is how the reference subset writes its numbers (``0.418``, ``-0.000063681``, ``-1``).
    The official GloVe text already uses that form (at most 6 significant digits, positional,
    no trailing zeros), which is returned unchanged without any arithmetic.
    """
    if _SHORT_DECIMAL.fullmatch(token):
        if len(token.replace("-", "").replace(".", "").lstrip("0")) <= 6:
            return token  # <= 6 significant digits round-trip through float32 uniquely
    v = _f32(float(token))
    for digits in range(9):
        s = f"{v:.{digits}e}"
        if _f32(float(s)) == v:
            return format(Decimal(s), "f")
    raise ValueError(f"cannot format {token!r} as a float32")  # pragma: no cover


def _derive_glove_subset(member: IO[bytes], inputs: Sequence[Path], out: Path) -> int:
    """Filter a GloVe text stream to :func:`glove_vocabulary` and gzip it into ``out``."""
    vocab = glove_vocabulary(inputs[:3], inputs[3:])
    n = 0
    inner = out.name.removesuffix(".part").removesuffix(".gz")
    with open(out, "wb") as raw, gzip.GzipFile(inner, "wb", 6, raw, mtime=0) as gz:
        for line in io.TextIOWrapper(
            member, encoding="utf-8", errors="surrogateescape", newline="\n"
        ):
            word, _, rest = line.rstrip("\r\n").partition(" ")
            if word not in vocab:
                continue
            values = [_float32_text(t) for t in rest.split(" ")]
            gz.write(f"{word} {' '.join(values)}\n".encode())
            n += 1
    return n


def _pack_tgz(root: Path, names: Iterable[str], out: Path) -> None:
    """A reproducible ``.tgz`` of ``root/name`` for each name (sorted, no timestamps or owners)."""
    with (
        open(out, "wb") as raw,
        gzip.GzipFile("", "wb", 6, raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in sorted(names):
            path = root / name
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            with open(path, "rb") as f:
                tar.addfile(info, f)
