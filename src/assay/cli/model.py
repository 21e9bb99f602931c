"""``assay model ...``: register the models Assay calls (candidates, baselines, judges)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import typer
from rich.markup import escape

from assay.cli._output import info, print_json, print_table, warn
from assay.providers.endpoints import (
    DEFAULT_N_CTX,
    PROVIDERS,
    ModelInfo,
    add_model,
    get_model,
    list_models,
    parse_params,
    remove_model,
)
from assay.providers.local_model import (
    BASE_MODEL_NOTE,
    BUNDLED_LABEL,
    INSTALL_HINT,
    ensure_bundled_model,
)
from assay.store import open_store

app = typer.Typer(
    help="Register the models Assay calls: candidates, baselines and judges.", no_args_is_help=True
)

JSON_HELP = "Print JSON (stable field names) instead of a table."


@app.command("add")
def add(
    name: str = typer.Argument(..., help="A name for the model, used in evals and reports."),
    base_url: str | None = typer.Option(
        None, "--base-url", help="API base URL, e.g. https://api.openai.com/v1 (not for local)."
    ),
    model_id: str | None = typer.Option(
        None,
        "--model-id",
        help="The provider's model id (for local: a label, default the GGUF's file name).",
    ),
    provider: str = typer.Option(
        "openai",
        "--provider",
        help=f"API kind: {', '.join(PROVIDERS)}. openai = any OpenAI-compatible server "
        "(Ollama, vLLM, llama.cpp's server...); local = a GGUF run in-process by llama.cpp.",
    ),
    api_key_env: str | None = typer.Option(
        None,
        "--api-key-env",
        help="NAME of the environment variable holding the API key (the key is never stored).",
    ),
    param: list[str] = typer.Option(
        [],
        "--param",
        help="Default request param KEY=VALUE (JSON values: temperature=0); repeatable.",
    ),
    model_path: Path | None = typer.Option(
        None,
        "--model-path",
        help="local: the GGUF file to run (default: the bundled Gemma 3 270M base model, "
        "which proves the pipeline runs but is not a meaningful judge).",
    ),
    chat_format: str | None = typer.Option(
        None,
        "--chat-format",
        help="local: llama.cpp chat format, e.g. chatml, gemma (default: the GGUF's template).",
    ),
    n_ctx: int | None = typer.Option(
        None,
        "--n-ctx",
        help=f"local: context size in tokens, a multiple of 256 (default {DEFAULT_N_CTX}).",
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="local: CPU threads (default: every core of the machine)."
    ),
    max_concurrency: int | None = typer.Option(
        None, "--max-concurrency", help="Calls in flight at most, across all runs."
    ),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute at most."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens per minute at most."),
    price_input: float = typer.Option(
        0.0, "--price-input", help="USD per million input tokens, for cost reports."
    ),
    price_output: float = typer.Option(
        0.0, "--price-output", help="USD per million output tokens, for cost reports."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Register a model endpoint: an API (OpenAI-compatible or Anthropic) or a local GGUF."""
    local = provider == "local"
    if not local:
        for flag, value in (("--base-url", base_url), ("--model-id", model_id)):
            if not value:
                raise typer.BadParameter(
                    f"missing; it is required for --provider {provider} (only local models "
                    "go without it)",
                    param_hint=f"'{flag}'",
                )
    params = parse_params(param)
    path = str(model_path) if model_path is not None else None
    given = {"model_path": path, "chat_format": chat_format, "n_ctx": n_ctx, "threads": threads}
    options = {key: value for key, value in given.items() if value is not None}
    with open_store() as store:
        model = add_model(
            store,
            name,
            base_url=base_url,
            model_id=model_id,
            provider=provider,
            api_key_env=api_key_env,
            params=params,
            options=options,
            max_concurrency=max_concurrency,
            rpm=rpm,
            tpm=tpm,
            price_input_per_mtok=price_input,
            price_output_per_mtok=price_output,
        )
    if as_json:
        print_json(model)
    info(f"Added model [bold]{model.name}[/] ({model.provider}, {escape(model.model_id)}).")
    if local and model_path is None:
        warn(BASE_MODEL_NOTE)
        # Now rather than at the first call; a failure here is retried by that call.
        info("Preparing the bundled model file under ASSAY_HOME/models (once)...")
        ensure_bundled_model()
    if model.api_key_env and not os.environ.get(model.api_key_env):
        warn(f"{model.api_key_env} is not set here; calls to {model.name!r} fail until it is.")
    if local and importlib.util.find_spec("llama_cpp") is None:
        warn(f"llama-cpp-python is not installed here; {model.name!r} cannot run: {INSTALL_HINT}")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List the registered models."""
    with open_store() as store:
        models = list_models(store)
    if as_json:
        print_json(models)
        return
    if not models:
        info("No models yet: add one with `assay model add NAME --base-url URL --model-id ID`.")
        return
    columns = (
        "name",
        "provider",
        "model id",
        "base url / file",
        "key from",
        "limits",
        "$/Mtok in/out",
    )
    print_table(columns, (_row(m) for m in models))


@app.command("show")
def show(
    name: str = typer.Argument(..., help="The model's name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show one model's settings."""
    with open_store() as store:
        model = get_model(store, name)
    if as_json:
        print_json(model)
        return
    fields = model.model_dump()
    fields["params"] = ", ".join(f"{k}={v!r}" for k, v in model.params.items()) or None
    fields["options"] = ", ".join(f"{k}={v!r}" for k, v in model.options.items()) or None
    if model.provider == "local" and not model.options.get("model_path"):
        fields["options"] = f"{fields['options']} ({BUNDLED_LABEL}: a base model, not a judge)"
    print_table(("field", "value"), fields.items(), title=f"model {model.name}")


@app.command("remove")
def remove(name: str = typer.Argument(..., help="The model's name.")) -> None:
    """Remove a model (refused while an eval definition or a run uses it)."""
    with open_store() as store:
        remove_model(store, name)
    info(f"Removed model [bold]{name}[/].")


def _row(model: ModelInfo) -> tuple[object, ...]:
    limits = [
        f"{label} {value}"
        for label, value in (
            ("conc", model.max_concurrency),
            ("rpm", model.rpm),
            ("tpm", model.tpm),
        )
        if value
    ]
    prices = f"{model.price_input_per_mtok:g} / {model.price_output_per_mtok:g}"
    where = model.base_url
    if model.provider == "local":
        where = model.options.get("model_path") or BUNDLED_LABEL
    return (
        model.name,
        model.provider,
        model.model_id,
        where,
        model.api_key_env,
        ", ".join(limits) or None,
        prices,
    )
