"""What an operator sees: the real Temporal Web UI, in headless Chromium (Debian's `chromium`),
shows each agent's summary (goal, model), details and current state."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright
from temporalio.client import Client

from engram.v1 import agent_pb2_grpc
from tests.conftest import chat, create_agent
from tests.engine import Engine
from tests.fake_llm import FakeLLM

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or ""


def test_the_web_ui_says_what_each_agent_is(
    engine: Engine, stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM, tmp_path: Path
) -> None:
    assert CHROMIUM, "chromium is missing (./scripts/test installs Debian's chromium package)"
    goal = f"Keep the billing queue moving, ticket {uuid.uuid4().hex[:8]}"
    agent_id = create_agent(stub, goal=goal, model="llama3.1:70b")
    chat(stub, agent_id, "hello there")
    url = f"http://localhost:{engine.ui_port}/namespaces/default/workflows/agent-{agent_id}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.get_by_text("User Metadata", exact=True).first.click()
            # The summary and details set at creation, and the agent's state now.
            for text in (f"{goal} · llama3.1:70b", "idle", "1 turns · last activity"):
                shown(page, text)
            # The LLM call shows in the timeline with its summary.
            page.get_by_text("Timeline", exact=True).first.click()
            shown(page, "llama3.1:70b: 0 tool rounds so far")
            page.screenshot(path=str(tmp_path / "web-ui.png"))
        finally:
            browser.close()
    assert (tmp_path / "web-ui.png").stat().st_size > 10_000

    # Operators filter agents by status, model and tenant: the search attributes hold them.
    async def by_model() -> list[str]:
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
        query = "EngramModel = 'llama3.1:70b' AND EngramStatus = 'idle'"
        return [e.id async for e in client.list_workflows(query)]

    assert f"agent-{agent_id}" in asyncio.run(by_model())


def shown(page: Page, text: str, timeout: float = 20.0) -> None:
    """Wait until `text` is on the screen: in the page or one of its frames (the UI renders
    metadata markdown in frames of its own)."""
    deadline = time.monotonic() + timeout
    while True:
        for frame in page.frames:
            with contextlib.suppress(PlaywrightError):
                if text in frame.evaluate("document.body ? document.body.innerText : ''"):
                    return
        assert time.monotonic() < deadline, f"the Web UI never showed {text!r}"
        page.wait_for_timeout(200)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The browser talks to the engine's own Web UI on this machine.
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
