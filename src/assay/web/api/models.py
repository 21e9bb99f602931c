"""``/api/v1/models``: the model endpoints Assay calls (candidates, baselines, judges).

An API key never crosses this API, in either direction: a model names the environment
variable its key is read from (``api_key_env``), as with ``assay model add``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from assay.errors import ValidationError
from assay.providers.endpoints import ModelInfo, add_model, get_model, list_models, remove_model
from assay.store import Store
from assay.web.api.common import MAX_INT, errors
from assay.web.deps import StoreDep
from assay.web.serverfiles import server_file

router = APIRouter(tags=["models"], responses=errors(404, 422))

# Request params that would carry a credential into the database.
_SECRET_PARAMS = frozenset({"api_key", "apikey", "api-key", "x-api-key", "authorization"})


class ModelCreate(BaseModel):
    """A model endpoint to register. There is no field for a key, and none is accepted."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="A name for the model, used in evals and reports.")
    provider: str = Field("openai", description="openai (any OpenAI-compatible API), anthropic.")
    base_url: str | None = Field(None, description="API base URL, e.g. https://api.openai.com/v1.")
    model_id: str | None = Field(None, description="The provider's model id.")
    api_key_env: str | None = Field(
        None,
        description="NAME of the environment variable holding the API key (never the key).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description='Default request params, e.g. {"temperature": 0}.'
    )
    options: dict[str, Any] | None = Field(
        None,
        description="Provider-specific options: for local, model_path (a GGUF file under "
        "ASSAY_HOME/models on the server), chat_format, n_ctx, threads.",
    )
    max_concurrency: int | None = Field(None, le=MAX_INT, description="Calls in flight at most.")
    rpm: int | None = Field(None, le=MAX_INT, description="Requests per minute at most.")
    tpm: int | None = Field(None, le=MAX_INT, description="Tokens per minute at most.")
    price_input_per_mtok: float = Field(0.0, description="USD per million input tokens.")
    price_output_per_mtok: float = Field(0.0, description="USD per million output tokens.")

    @field_validator("params")
    @classmethod
    def _no_key_in_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        # The value is never repeated: if it is a key, it must not reach a log or a response.
        for key in params:
            if key.lower() in _SECRET_PARAMS:
                raise ValueError(
                    f"{key!r} cannot be a default param: Assay never stores an API key; "
                    "name the environment variable holding it in api_key_env"
                )
        return params


@router.get("/models", response_model=list[ModelInfo])
def models_list(store: StoreDep) -> list[ModelInfo]:
    """The registered models, by name."""
    return list_models(store)


@router.post("/models", status_code=201, response_model=ModelInfo, responses=errors(409))
def models_add(body: ModelCreate, store: StoreDep) -> ModelInfo:
    """Register a model endpoint; every field is validated before anything is written."""
    return add_model(
        store,
        body.name,
        base_url=body.base_url,
        model_id=body.model_id,
        provider=body.provider,
        api_key_env=body.api_key_env,
        params=body.params,
        options=_server_options(store, body),
        max_concurrency=body.max_concurrency,
        rpm=body.rpm,
        tpm=body.tpm,
        price_input_per_mtok=body.price_input_per_mtok,
        price_output_per_mtok=body.price_output_per_mtok,
    )


def _server_options(store: Store, body: ModelCreate) -> dict[str, Any] | None:
    """A local model's file, named over the API, must be under ASSAY_HOME/models: a client
    must not probe or load other files of the server (the CLI takes any path)."""
    given = (body.options or {}).get("model_path")
    if body.provider != "local" or given is None:
        return body.options
    if not isinstance(given, str):
        raise ValidationError("options.model_path: expected a file name under ASSAY_HOME/models")
    path = server_file(store.settings.home, "models", given, "options.model_path")
    return {**(body.options or {}), "model_path": str(path)}


@router.get("/models/{name}", response_model=ModelInfo)
def models_show(name: str, store: StoreDep) -> ModelInfo:
    """One model's settings."""
    return get_model(store, name)


@router.delete("/models/{name}", status_code=204, response_class=Response)
def models_remove(name: str, store: StoreDep) -> Response:
    """Remove a model (refused while an eval definition or a run uses it)."""
    remove_model(store, name)
    return Response(status_code=204)
