"""Calling models: endpoints, the OpenAI-compatible, Anthropic and local (llama.cpp) clients,
retries, limits, the response cache and cost accounting. The engine needs ``ModelCaller`` and
the types; the CLI and the API need the endpoint services.
"""

from assay.providers.cache import CacheEntry, CacheWriter, ResponseCache, cache_key
from assay.providers.caller import ModelCaller
from assay.providers.endpoints import (
    PROVIDERS,
    ModelInfo,
    add_model,
    check_api_keys,
    get_model,
    list_models,
    local_options,
    parse_params,
    read_api_key,
    remove_model,
)
from assay.providers.limits import EndpointLimiter, limiter_for
from assay.providers.retry import RetryPolicy
from assay.providers.types import (
    RETRYABLE_KINDS,
    ChatRequest,
    ChatResult,
    ErrorKind,
    ProviderClient,
    ProviderError,
)

__all__ = [
    "PROVIDERS",
    "RETRYABLE_KINDS",
    "CacheEntry",
    "CacheWriter",
    "ChatRequest",
    "ChatResult",
    "EndpointLimiter",
    "ErrorKind",
    "ModelCaller",
    "ModelInfo",
    "ProviderClient",
    "ProviderError",
    "ResponseCache",
    "RetryPolicy",
    "add_model",
    "cache_key",
    "check_api_keys",
    "get_model",
    "limiter_for",
    "list_models",
    "local_options",
    "parse_params",
    "read_api_key",
    "remove_model",
]
