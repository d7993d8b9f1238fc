"""``python -m spigot``: the command line (:mod:`spigot.cli`), e.g. under torchrun::

torchrun --nproc_per_node=2 -m spigot train configs/syn2sem_synthetic.toml
"""

import sys

from spigot.cli import main

if __name__ == "__main__":
    sys.exit(main())
