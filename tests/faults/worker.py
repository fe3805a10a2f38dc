"""Stage commands for fault tests that must run in their own process (to be killed).

python -m tests.faults.worker tokenize STORE   the tokenize stage with a cheap
                                                deterministic embedder and a tiny RQ-VAE
"""

from __future__ import annotations

import sys
from pathlib import Path


def tokenize(store_root: Path) -> None:
    from storage import Store
    from tasks.stages.codes import TokenizeConfig
    from tasks.stages.tokenize import tokenize as run_tokenize
    from tests.codes.test_tokenize_stage import SMALL_RQVAE, CountingEmbedder

    run_tokenize(Store(store_root), TokenizeConfig(rqvae=SMALL_RQVAE), embedder=CountingEmbedder())


if __name__ == "__main__":
    command, store = sys.argv[1], Path(sys.argv[2])
    {"tokenize": tokenize}[command](store)
