"""Test support: the fake LLM server (``fakellm``) and its pytest fixtures (``fixtures``)."""
