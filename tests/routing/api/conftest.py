"""Fixtures the routing API tests share."""

from __future__ import annotations

import openai
import pytest

from routing.demo import demo_seed


@pytest.fixture
def demo_client(live_gateway, settings, tmp_path) -> openai.OpenAI:
    """The official client against a live gateway serving the embedded demo."""
    settings.VAR_DIR = tmp_path
    credentials = demo_seed()
    return openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=credentials.api_key, max_retries=0)
