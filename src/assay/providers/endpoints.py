"""Model endpoints: the named models Assay calls (candidates, baselines, judges).

An endpoint is a provider kind, a base URL, a model id, default request params, limits and
prices. A ``local`` endpoint runs a GGUF file in-process through llama.cpp instead: it has no
URL and no key, and its ``options`` say which file and how to load it (``local_client.py``).
The API key is *not* part of it: ``api_key_env`` names the environment variable the
key is read from at call time, and validation refuses anything that looks like a key itself,
so a key can never reach the database by mistake.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from assay.errors import AlreadyExistsError, ValidationError
from assay.providers.local_model import BUNDLED_FILE, INSTALL_HINT, bundled_package, check_gguf
from assay.providers.types import ProviderError
from assay.store import Store
from assay.store.lookup import endpoint_by_name
from assay.store.models import (
    Alias,
    AliasEvent,
    EvalDefinition,
    Judgment,
    ModelEndpoint,
    Run,
    RunGroup,
)

PROVIDERS = ("openai", "anthropic", "local")
# A local endpoint's base URL: it has none, but the URL is part of every cache key.
LOCAL_BASE_URL = "local://llama.cpp"
DEFAULT_N_CTX = 2048
_CHAT_FORMAT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Prefixes of real provider keys that happen to be valid variable names (hf_..., gsk_...).
_KEY_PREFIXES = ("sk-", "sk_", "gsk_", "hf_", "ghp_", "github_pat_", "r8_", "AIza")
# Sent when an endpoint needs no key (local servers): the SDKs insist on one.
DUMMY_API_KEY = "assay-no-key"
# Request fields Assay sets itself; a default param may not override them.
RESERVED_PARAMS = frozenset({"model", "messages", "tools", "stream", "system"})


class ModelInfo(BaseModel):
    """A registered model endpoint, as the CLI, the API and the providers see it."""

    model_config = ConfigDict(from_attributes=True)

    id: int | None = None
    name: str
    provider: str
    base_url: str
    model_id: str
    api_key_env: str | None = None
    params: dict[str, Any] = {}
    options: dict[str, Any] = {}  # provider-specific: the local provider's model file and load
    max_concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0
    created_at: datetime | None = None

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """SQLite hands back naive datetimes; they were stored as UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def add_model(
    store: Store,
    name: str,
    *,
    base_url: str | None = None,
    model_id: str | None = None,
    provider: str = "openai",
    api_key_env: str | None = None,
    params: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    max_concurrency: int | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    price_input_per_mtok: float = 0.0,
    price_output_per_mtok: float = 0.0,
) -> ModelInfo:
    """Register a model endpoint. Every field is validated before anything is written.

    ``base_url`` and ``model_id`` are required except for ``provider="local"``, whose
    ``options`` come from ``local_options`` (the model id defaults to the GGUF's file name).
    """
    if provider == "local":
        if base_url is not None or api_key_env is not None:
            raise ValidationError(
                "a local model runs in-process: it takes no --base-url or --api-key-env. To use "
                "a local server (Ollama, vLLM, llama.cpp's server), add it with --provider "
                "openai --base-url http://localhost:PORT/v1 instead"
            )
        try:
            options = local_options(**(options or {}))
        except TypeError:
            raise ValidationError(
                f"unknown local model options {sorted(options or {})}: expected model_path, "
                "chat_format, n_ctx, threads"
            ) from None
        base_url = LOCAL_BASE_URL
        model_id = model_id or Path(options.get("model_path") or BUNDLED_FILE).name
    else:
        if any(value is not None for value in (options or {}).values()):
            raise ValidationError(
                "--model-path, --chat-format, --n-ctx and --threads are for --provider local only"
            )
        for flag, value in (("--base-url", base_url), ("--model-id", model_id)):
            if not value:
                raise ValidationError(f"{flag} is required for --provider {provider}")
    assert base_url is not None and model_id is not None
    info = ModelInfo(
        name=name,
        provider=provider,
        base_url=base_url,
        model_id=model_id,
        api_key_env=api_key_env,
        params=dict(params or {}),
        options=dict(options or {}) if provider == "local" else {},
        max_concurrency=max_concurrency,
        rpm=rpm,
        tpm=tpm,
        price_input_per_mtok=price_input_per_mtok,
        price_output_per_mtok=price_output_per_mtok,
    )
    validate_model(info)
    with store.session() as session:
        if session.scalar(select(ModelEndpoint.id).where(ModelEndpoint.name == info.name)):
            raise AlreadyExistsError(
                f"a model named {info.name!r} already exists (see `assay model show {info.name}`)"
            )
        row = ModelEndpoint(**info.model_dump(exclude={"id", "created_at"}))
        session.add(row)
        try:
            session.flush()
        except IntegrityError as exc:  # a concurrent add of the same name
            raise AlreadyExistsError(f"a model named {info.name!r} already exists") from exc
        return ModelInfo.model_validate(row)


def list_models(store: Store) -> list[ModelInfo]:
    with store.session() as session:
        rows = session.scalars(select(ModelEndpoint).order_by(ModelEndpoint.name))
        return [ModelInfo.model_validate(row) for row in rows]


def get_model(store: Store, name: str) -> ModelInfo:
    with store.session() as session:
        return ModelInfo.model_validate(_endpoint(session, name))


def remove_model(store: Store, name: str) -> None:
    """Delete an endpoint and its cached responses, unless an eval or a run still uses it."""
    with store.session() as session:
        row = _endpoint(session, name)
        users = _references(session, row.id)
        if users:
            raise ValidationError(
                f"model {name!r} is still used by {', '.join(users)}; "
                "remove those first (nothing was deleted)"
            )
        try:
            session.execute(delete(ModelEndpoint).where(ModelEndpoint.id == row.id))
            session.flush()
        except IntegrityError as exc:  # referenced by something added meanwhile
            raise ValidationError(
                f"model {name!r} is still referenced by stored evals or runs (nothing was deleted)"
            ) from exc


def read_api_key(model: ModelInfo) -> str:
    """The endpoint's API key, read from its environment variable now (never stored)."""
    if not model.api_key_env:
        return DUMMY_API_KEY
    key = os.environ.get(model.api_key_env)
    if not key:
        raise ProviderError(
            "auth",
            f"the environment variable {model.api_key_env} is not set (or empty); model "
            f"{model.name!r} reads its API key from it at call time: "
            f"export {model.api_key_env}=... and retry",
            attempts=0,
        )
    return key


def check_api_keys(store: Store, model_names: list[str]) -> None:
    """Fail before any call when a model cannot be called, rather than on every row: its key
    variable is unset, or (local models) llama.cpp or the model file is missing."""
    for name in dict.fromkeys(model_names):
        model = get_model(store, name)
        if model.provider == "local":
            check_local_ready(model)
            continue
        try:
            read_api_key(model)
        except ProviderError as exc:
            raise ValidationError(exc.message) from None


def local_options(
    model_path: str | None = None,
    chat_format: str | None = None,
    n_ctx: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """A local endpoint's options, validated: the GGUF (``None``: the bundled Gemma 3 270M,
    whose package must be installed), the chat format (``None``: the template in the GGUF),
    the context size and the CPU threads (``None``: every core of the machine running it)."""
    path = None if model_path is None else str(check_gguf(model_path))
    if model_path is None:
        bundled_package()  # a clear error now rather than at the first call
    if chat_format is not None:
        _check_chat_format(chat_format)
    n_ctx = DEFAULT_N_CTX if n_ctx is None else n_ctx
    if not 256 <= n_ctx <= 1 << 20 or n_ctx % 256:
        # llama.cpp pads the context to a multiple of 256 and llama-cpp-python then
        # mis-sizes its buffers: refuse what it would not run as given.
        raise ValidationError(
            f"--n-ctx must be a multiple of 256 from 256 to 1048576 tokens, got {n_ctx}"
        )
    if threads is not None and not 1 <= threads <= 1024:
        raise ValidationError(f"--threads must be a positive number of threads, got {threads}")
    return {"model_path": path, "chat_format": chat_format, "n_ctx": n_ctx, "threads": threads}


def _check_chat_format(name: str) -> None:
    if not _CHAT_FORMAT.fullmatch(name):
        raise ValidationError(
            f"invalid --chat-format {name!r}: a llama.cpp chat format name such as "
            "chatml, llama-2, gemma or mistral-instruct"
        )
    # Without llama-cpp-python (the add warns about it) the name is checked at the first call.
    if name.startswith("chat_template.") or importlib.util.find_spec("llama_cpp") is None:
        return
    from llama_cpp.llama_chat_format import get_chat_completion_handler

    try:
        get_chat_completion_handler(name)
    except Exception as exc:  # a plain Exception subclass, whose message lists the formats
        raise ValidationError(f"unknown --chat-format {name!r}: {exc}") from None


def check_local_ready(model: ModelInfo) -> None:
    """``ValidationError`` unless a local model can be loaded here: llama-cpp-python
    installed, and its GGUF present (or the bundled model's package installed)."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ValidationError(
            f"model {model.name!r} runs locally through llama-cpp-python, which is not "
            f"installed: {INSTALL_HINT}"
        )
    path = model.options.get("model_path")
    if path is None:
        bundled_package()
    elif not Path(path).is_file():
        raise ValidationError(
            f"model {model.name!r}: its GGUF file {path} is gone; put it back, or remove the "
            "model and add it again with the new --model-path"
        )


def cache_scope(model: ModelInfo) -> str:
    """What identifies an endpoint's answers in the response cache, beside the model id and
    params: its URL, or for a local model the file and the options that change its answers."""
    if model.provider != "local":
        return model.base_url
    options = model.options
    source = options.get("model_path") or f"bundled/{BUNDLED_FILE}"
    return (
        f"{LOCAL_BASE_URL}/{source}?chat_format={options.get('chat_format') or ''}"
        f"&n_ctx={options.get('n_ctx') or DEFAULT_N_CTX}"
    )


def validate_model(info: ModelInfo) -> None:
    """Raise ``ValidationError`` naming the first bad field (and what was expected)."""
    if not _NAME.fullmatch(info.name):
        raise ValidationError(
            f"invalid model name {info.name!r}: use 1-200 letters, digits and . _ : @ - "
            "(starting with a letter or digit)"
        )
    if info.provider not in PROVIDERS:
        raise ValidationError(
            f"unknown provider {info.provider!r}: expected one of {', '.join(PROVIDERS)}"
        )
    if info.provider == "local":
        if info.base_url != LOCAL_BASE_URL:
            raise ValidationError("a local model takes no --base-url")
    else:
        _check_url(info.base_url)
    if not info.model_id.strip() or len(info.model_id) > 300:
        raise ValidationError("--model-id must be a non-empty model identifier (<= 300 chars)")
    if info.api_key_env is not None:
        check_api_key_env(info.api_key_env)
    for key in info.params:
        if key in RESERVED_PARAMS:
            raise ValidationError(
                f"--param {key}: Assay sets {key!r} itself for every call; it cannot be a default"
            )
    limits = (("--max-concurrency", info.max_concurrency), ("--rpm", info.rpm), ("--tpm", info.tpm))
    for flag, value in limits:
        if value is not None and value < 1:
            raise ValidationError(f"{flag} must be a positive integer, got {value}")
    prices = (
        ("--price-input", info.price_input_per_mtok),
        ("--price-output", info.price_output_per_mtok),
    )
    for flag, price in prices:
        if not math.isfinite(price) or price < 0:
            raise ValidationError(f"{flag} must be a price >= 0 in USD per million tokens")


def check_api_key_env(value: str) -> None:
    """Refuse an ``--api-key-env`` that is a key rather than a variable name.

    The message never repeats the value: if it is a key, it must not reach logs or terminals.
    """
    looks_like_key = (
        value.startswith(_KEY_PREFIXES)
        or not _ENV_VAR.fullmatch(value)
        or len(value) > 100
        or _random_looking(value)
    )
    if looks_like_key:
        raise ValidationError(
            "--api-key-env takes the NAME of an environment variable holding the key "
            "(e.g. OPENAI_API_KEY), not the key itself; the value given looks like a key or is "
            "not a valid variable name ([A-Za-z_][A-Za-z0-9_]*). Assay stores only the variable "
            "name and reads the key from the environment at call time; nothing was stored."
        )


def _random_looking(value: str) -> bool:
    """Long, no underscore, lower case and digits mixed: a token, not a variable name."""
    return (
        len(value) >= 24
        and "_" not in value
        and any(c.islower() for c in value)
        and any(c.isdigit() for c in value)
    )


def parse_params(assignments: list[str]) -> dict[str, Any]:
    """``["temperature=0", "stop=[\\"x\\"]", "user=bob"]`` -> a dict; values are JSON when they
    parse as JSON (``0`` -> int, ``true`` -> bool, ``"x"`` -> str), otherwise plain strings."""
    params: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValidationError(f"--param {item!r}: expected KEY=VALUE, e.g. temperature=0")
        if key in params:
            raise ValidationError(f"--param {key} is given twice")
        try:
            params[key] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            params[key] = raw
    return params


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(
            f"invalid --base-url {url!r}: expected an http(s) URL such as "
            "https://api.openai.com/v1 or http://localhost:8000/v1"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValidationError(
            f"invalid --base-url {parts.scheme}://{parts.hostname}...: no credentials, query or "
            "fragment (put the key in the variable named by --api-key-env)"
        )


def _endpoint(session: Session, name: str) -> ModelEndpoint:
    return endpoint_by_name(session, name)


def _references(session: Session, endpoint_id: int) -> list[str]:
    """What still uses an endpoint, in words (evals by name, runs and judgments by count)."""
    users: list[str] = []
    evals = session.execute(
        select(EvalDefinition.name, EvalDefinition.candidate_ids).order_by(EvalDefinition.name)
    ).all()
    direct = set(
        session.scalars(
            select(EvalDefinition.name).where(
                or_(
                    EvalDefinition.judge_id == endpoint_id,
                    EvalDefinition.baseline_id == endpoint_id,
                )
            )
        )
    )
    names = [
        name for name, candidates in evals if name in direct or endpoint_id in (candidates or [])
    ]
    if names:
        users.append(f"eval definition(s) {', '.join(repr(n) for n in names)}")
    aliases = session.scalars(
        select(Alias.name).where(Alias.endpoint_id == endpoint_id).order_by(Alias.name)
    ).all()
    if aliases:
        users.append(f"deployment alias(es) {', '.join(repr(a) for a in aliases)}")
    counts = (
        ("run(s)", Run, Run.endpoint_id),
        ("run group(s) as judge", RunGroup, RunGroup.judge_id),
        ("judgment(s)", Judgment, Judgment.judge_id),
        ("alias change(s) in history", AliasEvent, AliasEvent.endpoint_id),
    )
    for label, table, column in counts:
        count = session.scalar(select(func.count()).select_from(table).where(column == endpoint_id))
        if count:
            users.append(f"{count} {label}")
    return users
