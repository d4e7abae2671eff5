// Every call awaiting approval across the caller's agents: approve (with the input as the model
// wrote it, or as edited here), deny, or answer in the tool's place, one click each.
import { api } from "./api.js";
import { el, show, when, pretty } from "./dom.js";

export function inboxPage(view) {
  const list = el("div", { id: "inbox" });
  const problem = el("p", { class: "error-line" });
  // Cards are rebuilt on every refresh: keep what a person is typing into one.
  const drafts = new Map();

  const send = async (call, decision, body) => {
    try {
      await api("POST", `/agents/${encodeURIComponent(call.agent_id)}/approvals/${encodeURIComponent(call.call_id)}/${decision}`, body);
      drafts.delete(call.call_id);
      refresh();
    } catch (err) {
      problem.textContent = err.message;
    }
  };

  const card = (call) => {
    const original = pretty(call.input_json);
    const draft = drafts.get(call.call_id) || { input: original, answer: "" };
    drafts.set(call.call_id, draft);
    const input = el("textarea", { class: "args", "aria-label": "Input", rows: Math.min(12, original.split("\n").length + 1), oninput: () => { draft.input = input.value; } }, draft.input);
    const answer = el("input", { type: "text", "aria-label": "Reason or answer", placeholder: "Reason to deny, or the tool's answer", oninput: () => { draft.answer = answer.value; } });
    answer.value = draft.answer;
    const approve = () => {
      if (input.value.trim() === original.trim()) return send(call, "approve", {});
      try {
        // Sent compact, so the transcript shows the edit, not its whitespace.
        return send(call, "approve", { edited_input_json: JSON.stringify(JSON.parse(input.value)) });
      } catch {
        problem.textContent = "The edited input is not valid JSON.";
      }
    };
    const respond = () => {
      if (!answer.value.trim()) {
        problem.textContent = "Write the tool's answer first.";
        return;
      }
      send(call, "approve", { response: answer.value });
    };
    return el("div", { class: "card", "data-call": call.call_id },
      el("div", {}, el("strong", {}, call.tool_name), " for ",
        el("a", { href: `#/agents/${encodeURIComponent(call.agent_id)}` }, call.goal || call.agent_id),
        el("span", { class: "muted" }, ` since ${when(call.since)}`)),
      input, answer,
      el("div", { class: "actions" },
        el("button", { class: "primary", type: "button", onclick: approve }, "Approve"), " ",
        el("button", { type: "button", onclick: () => send(call, "deny", { reason: answer.value }) }, "Deny"), " ",
        el("button", { type: "button", onclick: respond }, "Respond")));
  };

  async function refresh() {
    // A refresh would replace the card under the person's cursor: wait until they leave it.
    if (list.contains(document.activeElement) && document.activeElement.matches("textarea, input")) return;
    try {
      const waiting = (await api("GET", "/approvals")).data;
      list.replaceChildren(...(waiting.length ? waiting.map(card) : [el("p", { class: "muted" }, "Nothing awaits approval.")]));
      document.getElementById("inbox-count").textContent = waiting.length ? `(${waiting.length})` : "";
      problem.textContent = "";
    } catch (err) {
      problem.textContent = err.message;
    }
  }
  show(view, el("h1", {}, "Inbox"), problem, list);
  refresh();
  const timer = setInterval(refresh, 2000);
  return () => clearInterval(timer);
}
