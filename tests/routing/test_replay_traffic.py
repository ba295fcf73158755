"""`replay_traffic`: where it sends, and what it says when pointed at the wrong place."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from routing.management.commands.replay_traffic import api_base, default_url


def test_it_talks_to_the_port_make_run_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("PORT", "8123")
    assert default_url() == "http://127.0.0.1:8123/v1"


def test_an_openai_base_url_wins_over_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://gateway:9000/v1")
    assert default_url() == "http://gateway:9000/v1"


def test_it_keeps_a_base_ending_in_v1() -> None:
    assert api_base("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://127.0.0.1:8000/", "http://127.0.0.1:8000/api"])
def test_a_url_without_v1_is_refused_with_the_fix(url: str) -> None:
    with pytest.raises(CommandError, match=r"ending in /v1.*e\.g\. http://127\.0\.0\.1:8000(/api)?/v1"):
        call_command("replay_traffic", "--url", url, "--key", "co-test", "--count", "1")


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(CommandError, match="http:// or https://"):
        call_command("replay_traffic", "--url", "127.0.0.1:8000/v1", "--key", "co-test", "--count", "1")
