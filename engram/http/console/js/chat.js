// A chat with one agent: its transcript, then each turn followed live as the agent writes it.
import { api, events } from "./api.js";
import { el, show } from "./dom.js";
import { messageNode } from "./transcript.js";

const BUSY = new Set(["working", "waiting", "waiting_for_quota", "sleeping"]);

export function chatPage(view, agentId) {
  const path = `/agents/${encodeURIComponent(agentId)}`;
  const stop = new AbortController();
  const transcript = el("div", { class: "transcript", id: "transcript" });
  const title = el("h1", {}, agentId);
  const status = el("span", { class: "status", id: "agent-status" });
  const problem = el("p", { class: "error-line" });
  const input = el("textarea", { name: "message", placeholder: "Message the agent" });
  const queued = new Map(); // message id -> the queued element, until the agent records it
  const drafts = new Map(); // message id -> the reply being streamed
  let last = 0;
  let following = false;
  let sending = 0;

  const add = (node) => {
    transcript.append(node);
    transcript.scrollTop = transcript.scrollHeight;
  };

  function onEvent(kind, message) {
    last = Math.max(last, Number(message.sequence_id || 0));
    const turn = message.message_id;
    if (kind === "user_message" && queued.has(turn)) {
      queued.get(turn).remove();
      queued.delete(turn);
    }
    if (kind === "text") {
      let draft = drafts.get(turn);
      if (!draft) {
        draft = el("div", { class: "msg assistant streaming" }, el("span", { class: "tag" }, "agent"));
        drafts.set(turn, draft);
        add(draft);
      }
      draft.append(message.text.content || "");
      transcript.scrollTop = transcript.scrollHeight;
      return;
    }
    if (kind === "final_answer" && drafts.has(turn)) {
      drafts.get(turn).remove();
      drafts.delete(turn);
    }
    const node = messageNode(kind, message);
    if (node) add(node);
  }

  async function refreshAgent() {
    const agent = await api("GET", path);
    title.textContent = agent.goal || agentId;
    status.textContent = agent.status;
    status.className = `status ${agent.status}`;
    return agent;
  }

  // Replay ends when no turn is in flight; follow again while one may be.
  async function follow() {
    if (following) return;
    following = true;
    try {
      for (;;) {
        await events(`${path}/events?after=${last}`, onEvent, stop.signal);
        const agent = await refreshAgent();
        if (!sending && !BUSY.has(agent.status) && !agent.queued_messages) break;
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
    } catch (err) {
      if (!stop.signal.aborted) problem.textContent = err.message;
    } finally {
      following = false;
    }
  }

  async function send(content) {
    const id = crypto.randomUUID().replaceAll("-", "");
    const busy = sending > 0 || BUSY.has(status.textContent);
    const node = el("div", { class: `msg user ${busy ? "queued" : "sending"}`, "data-queued": id },
      el("span", { class: "tag" }, busy ? "queued" : "sending"), content);
    queued.set(id, node);
    add(node);
    sending += 1;
    follow();
    try {
      await api("POST", `${path}/messages`, { content, message_id: id });
    } catch (err) {
      problem.textContent = err.message;
      node.remove();
      queued.delete(id);
    } finally {
      sending -= 1;
    }
    follow();
  }

  const control = (command) => async () => {
    try {
      await api("POST", `${path}/${command}`);
      problem.textContent = "";
      await refreshAgent();
      follow();
    } catch (err) {
      problem.textContent = err.message;
    }
  };

  const form = el("form", { class: "row", onsubmit: (event) => {
    event.preventDefault();
    const content = input.value.trim();
    if (!content) return;
    input.value = "";
    send(content);
  } }, input, el("button", { class: "primary", type: "submit" }, "Send"));
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  show(view, title,
    el("p", {}, status, " ",
      el("button", { type: "button", onclick: control("pause") }, "Pause"), " ",
      el("button", { type: "button", onclick: control("resume") }, "Resume"), " ",
      el("button", { type: "button", onclick: control("cancel") }, "Cancel"), " ",
      el("button", { type: "button", onclick: control("retry") }, "Retry"), " ",
      el("a", { href: `#/agents/${encodeURIComponent(agentId)}/history` }, "History and search")),
    transcript, form, problem);

  (async () => {
    try {
      await refreshAgent();
      await events(`${path}/events?include_history=true`, onEvent, stop.signal);
      follow();
    } catch (err) {
      if (!stop.signal.aborted) problem.textContent = err.message;
    }
  })();
  const timer = setInterval(() => refreshAgent().catch(() => {}), 2000);
  return () => {
    stop.abort();
    clearInterval(timer);
  };
}
