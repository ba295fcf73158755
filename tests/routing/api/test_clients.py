"""Other clients of the chat API: LangChain's `ChatOpenAI` and the `litellm` SDK, changing only the base URL."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest

from testing.factories import make_key, make_policy, openai_endpoint
from testing.upstream import UpstreamBehaviour, UpstreamServer, running_upstream

pytestmark = pytest.mark.live

# litellm would fetch its price list from the network when imported.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

MODEL = "gpt-4o-mini"  # a model id litellm knows the prices of
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Person(pydantic.BaseModel):
    name: str
    age: int


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    behaviour = UpstreamBehaviour(
        answer='{"name": "Ada", "age": 36}', tool_calls=((MODEL, (("get_weather", '{"city": "Paris"}'),)),)
    )
    with running_upstream(behaviour) as server:
        yield server


@pytest.fixture
def gateway_key(live_gateway: Any, upstream: UpstreamServer) -> tuple[str, str]:
    """(base URL, key) of a one-tier policy "clients" on the upstream."""
    endpoint = openai_endpoint("ep-mini", upstream.base_url, MODEL)
    _, key = make_key(make_policy("clients", [(endpoint, 0.5)]))
    return f"{live_gateway.url}/v1", key


def test_langchain_bind_tools_returns_the_tool_calls(gateway_key):
    from langchain_openai import ChatOpenAI

    base_url, key = gateway_key
    model = ChatOpenAI(model="clients", base_url=base_url, api_key=key, max_retries=0)

    message = model.bind_tools([WEATHER]).invoke("What is the weather in Paris?")

    assert [(call["name"], call["args"]) for call in message.tool_calls] == [("get_weather", {"city": "Paris"})]


def test_langchain_with_structured_output_returns_the_model(gateway_key):
    from langchain_openai import ChatOpenAI

    base_url, key = gateway_key
    model = ChatOpenAI(model="clients", base_url=base_url, api_key=key, max_retries=0)

    assert model.with_structured_output(Person).invoke("Who?") == Person(name="Ada", age=36)


def test_litellm_gets_tool_calls_and_can_price_the_answer(gateway_key):
    import litellm

    base_url, key = gateway_key

    response = litellm.completion(
        model="openai/clients",
        api_base=base_url,
        api_key=key,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],
    )

    call = response.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    assert response.model.endswith(MODEL)
    assert litellm.completion_cost(completion_response=response, model=MODEL) > 0
