"""The web console at `/`, driven in Debian's chromium against a real engine: sign in, create an
agent, chat and watch the reply stream, approve a call from the Inbox, search history and fork."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.conftest import eventually
from tests.fake_llm import FakeLLM, note_taker
from tests.http_api import Tenants, client, tenants_engine

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
UPDATE_SCREENSHOTS = os.environ.get("ENGRAM_UPDATE_SCREENSHOTS") == "1"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")


@pytest.fixture(scope="module")
def tenants(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    started = tenants_engine(tmp_path_factory.mktemp("console-engine"), fake_llm.url)
    yield started
    started.engine.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, tenants: Tenants) -> Iterator[Page]:
    context = browser.new_context(
        base_url=tenants.url.removesuffix("/v1"), viewport={"width": 1100, "height": 760}
    )
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda err: problems.append(str(err)))
    opened.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    opened.goto("/")
    opened.get_by_placeholder("API key").fill(tenants.acme)
    opened.get_by_role("button", name="Sign in").click()
    expect(opened.get_by_role("heading", name="Agents")).to_be_visible()
    yield opened
    context.close()
    assert problems == []


def screenshot(page: Page, name: str) -> None:
    if UPDATE_SCREENSHOTS:
        page.screenshot(path=str(ROOT / "docs" / name))


def agent_with_deploy(tenants: Tenants) -> str:
    with client(tenants.url, tenants.acme) as http:
        made = http.post(
            "/agents",
            json={"goal": "Deploy services.", "model": "fake-model", "tools": [{"name": "deploy"}]},
        )
    assert made.status_code == 201, made.text
    return str(made.json()["agent_id"])


def test_the_page_is_locked_down_and_needs_a_key(tenants: Tenants) -> None:
    base = tenants.url.removesuffix("/v1")
    page = httpx2.get(base + "/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert '<script type="module" src=' in page.text and "<script>" not in page.text
    assert httpx2.get(base + "/console/js/main.js").status_code == 200
    assert httpx2.get(base + "/v1/approvals").status_code == 401


def test_create_an_agent_and_chat_with_the_reply_streamed(page: Page, llm: FakeLLM) -> None:
    page.get_by_placeholder("Goal").fill("Help with Postgres.")
    page.get_by_placeholder("Model").fill("fake-model")
    page.get_by_role("button", name="Create agent").click()
    expect(page.get_by_role("heading", name="Help with Postgres.")).to_be_visible()

    llm.ttft, llm.token_delay = 0.5, 0.15
    box = page.get_by_placeholder("Message the agent")
    box.fill("The 'orders' table is slow <b>today</b>.")
    box.press("Enter")
    box.fill("What table was it?")
    box.press("Enter")
    # The second message waits for the first turn, and says so.
    expect(page.locator(".msg.queued", has_text="What table was it?")).to_contain_text("queued")
    expect(page.locator(".msg.streaming")).to_contain_text("You said")
    transcript = page.locator("#transcript")
    answer = transcript.locator(".msg.assistant").first
    expect(answer).to_have_text("agentYou said: The 'orders' table is slow <b>today</b>.")
    expect(transcript.locator(".msg.assistant").nth(1)).to_contain_text("'orders' table")
    expect(page.locator(".msg.queued")).to_have_count(0)
    assert page.locator("#transcript b").count() == 0  # agent text is text, never markup
    expect(page.locator("#agent-status")).to_have_text("idle")
    screenshot(page, "console-chat.png")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#agent-status")).to_have_text("paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#agent-status")).to_have_text("idle")

    page.get_by_role("link", name="Agents").click()
    row = page.locator("tr", has_text="Help with Postgres.")
    expect(row).to_contain_text("fake-model")
    expect(row).to_contain_text("idle")
    page.locator("select[name=status]").select_option("working")
    expect(row).to_have_count(0)
    page.locator("select[name=status]").select_option("")
    expect(row).to_have_count(1)
    screenshot(page, "console-agents.png")


DROP_A_FILE = """([name, text]) => {
    const files = new DataTransfer();
    files.items.add(new File([text], name, { type: "text/plain" }));
    const zone = document.getElementById("transcript");
    zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: files, bubbles: true }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: files, bubbles: true }));
}"""


def test_files_dropped_or_picked_go_to_the_model_with_the_message(
    page: Page, tenants: Tenants, llm: FakeLLM
) -> None:
    agent_id = agent_with_deploy(tenants)
    page.goto(f"/#/agents/{agent_id}")
    page.evaluate(DROP_A_FILE, ["notes.txt", "The backup runs at 03:00 on Sundays."])
    page.get_by_label("Attach files").set_input_files(
        {"name": "schema.sql", "mimeType": "text/plain", "buffer": b"CREATE TABLE plums (id int);"}
    )
    chips = page.locator("#attachments .chip")
    expect(chips).to_have_count(2)
    page.get_by_role("button", name="Remove schema.sql").click()
    expect(chips).to_have_count(1)
    page.get_by_placeholder("Message the agent").fill("When does the backup run?")
    page.get_by_role("button", name="Send").click()
    expect(chips).to_have_count(0)
    sent = page.locator("#transcript .msg.user", has_text="When does the backup run?")
    expect(sent).to_contain_text("notes.txt")
    expect(page.locator("#transcript .msg.assistant")).to_contain_text("When does the backup run?")
    (request,) = llm.requests_for("When does the backup run?")
    assert "The backup runs at 03:00 on Sundays." in str(request["messages"])
    assert "plums" not in str(request["messages"])

    # A file the model cannot take is refused by the gateway, in words, and nothing is sent.
    asked = len(llm.requests)
    page.get_by_label("Attach files").set_input_files(
        {"name": "photo.png", "mimeType": "image/png", "buffer": b"not a png"}
    )
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".error-line")).to_contain_text("is not a image/png image")
    expect(page.locator("#agent-status")).to_have_text("idle")
    assert len(llm.requests) == asked


def test_a_message_sent_while_the_transcript_loads_is_shown_once(
    page: Page, tenants: Tenants
) -> None:
    """The chat follows a new turn from where the transcript ends, even when the message leaves
    before the transcript has loaded (here, held back until the new turn has ended)."""
    agent_id = agent_with_deploy(tenants)
    with client(tenants.url, tenants.acme) as http:
        sent = http.post(f"/agents/{agent_id}/messages", json={"content": "First."})
        assert sent.status_code == 200, sent.text
        eventually(lambda: http.get(f"/agents/{agent_id}").json()["status"] == "idle")
    held: list[Route] = []
    page.route("**/events?include_history=true", lambda route: held.append(route))
    page.goto(f"/#/agents/{agent_id}")
    for _ in range(200):  # Playwright hands over the request while the test waits in it
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the transcript was never asked for"
    box = page.get_by_placeholder("Message the agent")
    box.fill("Second.")
    box.press("Enter")
    with client(tenants.url, tenants.acme) as http:
        eventually(
            lambda: len(http.get(f"/agents/{agent_id}/history").json()["turns"]) == 2,
            what="the second turn",
        )
    held[0].continue_()
    # Once the transcript has loaded (its stream ends: no turn is in flight), nothing is doubled.
    page.wait_for_load_state("networkidle")
    transcript = page.locator("#transcript")
    expect(transcript.locator(".msg.assistant").nth(1)).to_have_text("agentYou said: Second.")
    expect(transcript.locator(".msg.assistant")).to_have_count(2)
    expect(transcript.locator(".msg.user")).to_have_count(2)


def test_approve_a_call_from_the_inbox_and_the_turn_finishes(
    page: Page, tenants: Tenants, llm: FakeLLM
) -> None:
    llm.reply = note_taker
    agent_id = agent_with_deploy(tenants)
    page.goto(f"/#/agents/{agent_id}")
    box = page.get_by_placeholder("Message the agent")
    box.fill('call deploy {"service": "api"}')
    box.press("Enter")
    expect(page.locator(".msg.tool").first).to_contain_text('"service": "api"')

    page.get_by_role("link", name="Inbox").click()
    card = page.locator(".card", has_text="Deploy services.")
    expect(card.get_by_label("Input")).to_have_value('{\n  "service": "api"\n}')
    screenshot(page, "console-inbox.png")
    card.get_by_role("button", name="Approve").click()
    expect(card).to_have_count(0)

    page.goto(f"/#/agents/{agent_id}")
    expect(page.locator("#transcript .msg.assistant")).to_have_text(
        "agentDone: deployed api: done."
    )

    # History: search finds the call; a fork at its answer opens the new agent.
    page.get_by_role("link", name="History and search").click()
    page.get_by_placeholder("Search this agent's history").fill("deployed")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".hit").first).to_contain_text("deployed api")
    answer = page.locator("#history .msg.assistant")
    seq = answer.get_attribute("data-seq")
    answer.get_by_role("button", name="Fork here").click()
    expect(page).not_to_have_url(re.compile(f"{agent_id}"))
    expect(page.locator("#transcript .msg.assistant")).to_have_text(
        "agentDone: deployed api: done."
    )
    forked = page.url.rsplit("/", 1)[1]
    with client(tenants.url, tenants.acme) as http:
        made = http.get(f"/agents/{forked}").json()
    assert made["forked_from"] == agent_id and made["fork_sequence"] == seq

    # A second turn, then rewind to the end of the first: the second stays readable in a branch.
    page.goto(f"/#/agents/{agent_id}")
    page.get_by_placeholder("Message the agent").fill("Anything else?")
    page.get_by_placeholder("Message the agent").press("Enter")
    expect(page.locator("#transcript .msg.assistant")).to_have_count(2)
    page.get_by_role("link", name="History and search").click()
    answers = page.locator("#history .msg.assistant")
    expect(answers).to_have_count(2)
    expect(page.locator("#history .msg.user").first.get_by_role("button")).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    answers.first.get_by_role("button", name="Rewind here").click()
    expect(page.locator("#notice")).to_contain_text("Rewound")
    expect(answers).to_have_count(1)
    page.get_by_role("link", name="its branch").click()
    expect(page.locator("#transcript .msg.assistant").last).to_have_text("agentSure.")
    with client(tenants.url, tenants.acme) as http:
        kept = http.get(f"/agents/{agent_id}/history").json()
    assert "Anything else?" not in json.dumps(kept)


def test_the_inbox_edits_a_call_s_input_and_answers_in_a_tool_s_place(
    page: Page, tenants: Tenants, llm: FakeLLM
) -> None:
    llm.reply = note_taker
    agent_id = agent_with_deploy(tenants)
    page.goto(f"/#/agents/{agent_id}")
    box = page.get_by_placeholder("Message the agent")
    box.fill('call deploy {"service": "api"}')
    box.press("Enter")
    page.get_by_role("link", name="Inbox").click()
    card = page.locator(".card", has_text="Deploy services.")
    card.get_by_label("Input").fill('{"service": "nope"')
    card.get_by_role("button", name="Approve").click()
    expect(page.locator(".error-line")).to_have_text("The edited input is not valid JSON.")
    card.get_by_label("Input").fill('{"service": "web"}')
    card.get_by_role("button", name="Approve").click()
    expect(card).to_have_count(0)
    page.goto(f"/#/agents/{agent_id}")
    expect(page.locator("#transcript .msg.assistant")).to_have_text(
        "agentDone: deployed web: done."
    )

    box = page.get_by_placeholder("Message the agent")
    box.fill('call deploy {"service": "db"}')
    box.press("Enter")
    page.get_by_role("link", name="Inbox").click()
    card = page.locator(".card", has_text="Deploy services.")
    card.get_by_label("Reason or answer").fill("db is frozen today")
    card.get_by_role("button", name="Respond").click()
    expect(card).to_have_count(0)
    page.goto(f"/#/agents/{agent_id}")
    expect(page.locator("#transcript .msg.assistant").last).to_have_text(
        "agentDone: db is frozen today."
    )


def test_the_readme_example_runs_and_approvals_stay_within_a_tenant(
    tenants: Tenants, llm: FakeLLM
) -> None:
    text = README.read_text()
    section = text[text.index("### Web console\n") :].split("\n## ", 1)[0]
    (shell,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    llm.reply = note_taker
    agent_id = agent_with_deploy(tenants)
    asking = threading.Thread(target=ask_to_deploy, args=(tenants, agent_id))
    asking.start()
    with client(tenants.url, tenants.acme) as http:
        eventually(lambda: http.get(f"/agents/{agent_id}/approvals").json()["data"], 30)
    done = subprocess.run(
        ["bash", "-euc", shell.replace("8080", str(tenants.engine.http_port))],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ENGRAM_API_KEY": tenants.acme},
    )
    assert done.returncode == 0, done.stderr
    waiting = [c for c in json.loads(done.stdout)["data"] if c["agent_id"] == agent_id]
    assert [(c["tool_name"], c["input_json"]) for c in waiting] == [
        ("deploy", '{"service": "web"}')
    ]
    with client(tenants.url, tenants.globex) as other:
        assert other.get("/approvals").json()["data"] == []
        for method, route in (("GET", "search?q=deploy"), ("POST", "retry")):
            theirs = other.request(method, f"/agents/{agent_id}/{route}")
            unknown_id = str(uuid.uuid4())
            unknown = other.request(method, f"/agents/{unknown_id}/{route}")
            assert theirs.status_code == unknown.status_code == 404
            assert theirs.text.replace(agent_id, unknown_id) == unknown.text
    with client(tenants.url, tenants.acme) as http:
        empty = http.get(f"/agents/{agent_id}/search?q=")
        assert empty.status_code == 400 and "error" in empty.json()
        call_id = waiting[0]["call_id"]
        http.post(f"/agents/{agent_id}/approvals/{call_id}/deny", json={})
    asking.join(30)


def ask_to_deploy(tenants: Tenants, agent_id: str) -> None:
    with client(tenants.url, tenants.acme) as http:
        http.post(
            f"/agents/{agent_id}/messages", json={"content": 'call deploy {"service": "web"}'}
        )
