"""Access to the web app and its REST API: API tokens (create, list, revoke, verify).

Layer-neutral: the CLI creates and revokes tokens, the web app verifies them; neither is
imported here.
"""

from assay.auth.tokens import (
    CreatedToken,
    TokenInfo,
    auth_configured,
    create_token,
    list_tokens,
    revoke_token,
    verify_token,
)

__all__ = [
    "CreatedToken",
    "TokenInfo",
    "auth_configured",
    "create_token",
    "list_tokens",
    "revoke_token",
    "verify_token",
]
