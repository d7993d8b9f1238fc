"""Download the open data sets from their official sources, checked against recorded SHA-256 sums.

::

    spigot data download ewt|sst|glove|propbank|all [...] [--dir DIR] [--base-url URL]
                         [--keep-archives] [--no-progress]
    spigot data where [NAME ...] [--dir DIR]

Every file that the command writes has a SHA-256 sum recorded in ``src/spigot/data/checksums.json``
(in the directory above this package), computed on the reference copies. A file is only ever
replaced by a new copy that verifies:

* a file that is already present with a good checksum is skipped, without any request;
* a download goes to ``FILE.part``; an interrupted one is resumed with an HTTP ``Range`` request
  (a server that answers ``206`` continues it, one that answers ``200`` restarts it);
* the ``.part`` is renamed over ``FILE`` (atomically) only once its checksum is good. A download
  whose checksum fails is deleted with an error naming both sums, and nothing is replaced;
* archives (``.zip``, ``.tgz``) are cached in ``DIR/.download/`` and deleted once the files taken
  from them verify (``keep_archives=True`` keeps them). No checksum of an upstream archive is
  recorded (they could not be downloaded when the table was written): the files extracted or
  derived from them are the ones checked.

Where each data set comes from (details and the checksum table: ``docs/data_download.md``):

========  =====================================================================================
ewt       UD English EWT v2.16: the three ``.conllu`` files, README.md, LICENSE.txt and
          stats.xml, straight from ``UniversalDependencies/UD_English-EWT`` on GitHub at commit
          ``15d613d8``.
sst       ``trees/{train,dev,test}.txt`` of Stanford's ``trainDevTestTrees_PTB.zip`` (checked
          member by member); ``sst2_{train,dev,test}.tsv`` are *derived* from them here by the
          documented rule of :func:`derive_sst2` and checked against the recorded sums.
glove     Stanford's ``glove.6B.zip`` (822 MB; Stanford NLP's Hugging Face copy first, then
          nlp.stanford.edu). Its member ``glove.6B.50d.txt`` is filtered, while streaming, to the
          words of EWT and SST (:func:`glove_vocabulary`; EWT and SST are downloaded first when
          absent) and written as ``glove-6b-50d-subset/glove.6B.50d.sst_ewt.txt.gz``, the file the
          configs read; its *decompressed content* is checked.
propbank  The 1,150 ``.gold_skel`` and documentation files of ``propbank/propbank-release`` at
          commit ``4abade0b``, one by one from GitHub (each checked), packed into
          ``propbank-ewt/propbank-ewt-gold_skel.tgz``; the archive is checked member by member.
========  =====================================================================================

Data directory: :func:`find_data_dir` looks at ``--dir``, then ``$SPIGOT_DATA``, then
``../shared/data`` (relative to the current directory). :func:`resolve_data_path` maps a path
written in a config (``${data}/...`` or ``../shared/data/...``) into that directory.

The package, whose public names are all re-exported here:

============  ===================================================================================
paths.py      the data directory and config paths (:func:`find_data_dir`,
              :func:`resolve_data_path`, :class:`DataDirError`, :data:`ENV_VAR`)
datasets.py   the table (:data:`DATASETS`, :class:`FileSpec`, ...) and the rules of the derived
              files (SST-2, GloVe subset, PropBank ``.tgz``)
fetch.py      checksums (:func:`check_file`), resumable HTTP downloads into ``FILE.part`` with
              retries, progress lines, :class:`DownloadError`, :class:`ChecksumError`
run.py        :func:`download` (one data set, file by file, atomic replace) and
              :func:`dataset_status`
cli.py        ``spigot data download|where``: :func:`add_subparser` and :func:`main`
__main__.py   ``python -m spigot.data.download``, or as a path, without spigot
============  ===================================================================================

It uses the standard library only (it never imports torch or numpy itself; its modules import each
other relatively), so it also runs as a script without importing spigot:
``python src/spigot/data/download download ewt --dir DATA``. The tunables of the downloads
(``TIMEOUT``, ``ATTEMPTS``, ``RETRY_DELAYS``) are read from :mod:`.fetch`, where they are patched.
"""

from __future__ import annotations

from .cli import add_subparser, main
from .datasets import CHECKSUMS_PATH as CHECKSUMS_PATH
from .datasets import (
    DATASETS,
    Archive,
    Dataset,
    FileSpec,
    Source,
    derive_sst2,
    glove_vocabulary,
)
from .datasets import _float32_text as _float32_text
from .datasets import _lookup as _lookup
from .fetch import ChecksumError, DownloadError, check_file, sha256_file
from .paths import DATA_PLACEHOLDER as DATA_PLACEHOLDER
from .paths import (
    DEFAULT_DATA_DIR,
    ENV_VAR,
    DataDirError,
    find_data_dir,
    locate_data_dir,
    resolve_data_path,
)
from .paths import DOWNLOAD_CACHE as DOWNLOAD_CACHE
from .run import FileResult, dataset_status, download

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "DEFAULT_DATA_DIR",
    "Archive",
    "ChecksumError",
    "DataDirError",
    "Dataset",
    "DownloadError",
    "FileResult",
    "FileSpec",
    "Source",
    "add_subparser",
    "check_file",
    "dataset_status",
    "derive_sst2",
    "download",
    "find_data_dir",
    "glove_vocabulary",
    "locate_data_dir",
    "main",
    "resolve_data_path",
    "sha256_file",
]
