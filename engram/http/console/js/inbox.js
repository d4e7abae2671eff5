// Every call awaiting approval across the caller's agents, with one-click approve and deny.
import { api } from "./api.js";
import { el, show, when, pretty } from "./dom.js";

export function inboxPage(view) {
  const list = el("div", { id: "inbox" });
  const problem = el("p", { class: "error-line" });

  const decide = (call, decision) => async () => {
    try {
      await api("POST", `/agents/${encodeURIComponent(call.agent_id)}/approvals/${encodeURIComponent(call.call_id)}/${decision}`, {});
      refresh();
    } catch (err) {
      problem.textContent = err.message;
    }
  };

  const card = (call) => el("div", { class: "card", "data-call": call.call_id },
    el("div", {}, el("strong", {}, call.tool_name), " for ",
      el("a", { href: `#/agents/${encodeURIComponent(call.agent_id)}` }, call.goal || call.agent_id),
      el("span", { class: "muted" }, ` since ${when(call.since)}`)),
    el("pre", {}, pretty(call.input_json)),
    el("button", { class: "primary", type: "button", onclick: decide(call, "approve") }, "Approve"), " ",
    el("button", { type: "button", onclick: decide(call, "deny") }, "Deny"));

  async function refresh() {
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
