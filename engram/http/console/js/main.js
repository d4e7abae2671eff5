// The page's router: #/agents, #/agents/<id>, #/agents/<id>/history, #/inbox; and sign-in.
import { api, key } from "./api.js";
import { el, show } from "./dom.js";
import { agentsPage } from "./agents.js";
import { chatPage } from "./chat.js";
import { historyPage } from "./history.js";
import { inboxPage } from "./inbox.js";

const view = document.getElementById("view");
let leave = () => {};

function loginPage() {
  const input = el("input", { type: "password", name: "key", placeholder: "API key", required: true, autocomplete: "off" });
  const problem = el("p", { class: "error-line" });
  const form = el("form", { class: "row", onsubmit: async (event) => {
    event.preventDefault();
    key.set(input.value);
    try {
      await api("GET", "/agents?page_size=1");
      route();
    } catch (err) {
      key.clear();
      problem.textContent = err.message;
    }
  } }, input, el("button", { class: "primary", type: "submit" }, "Sign in"));
  show(view, el("h1", {}, "Sign in"),
    el("p", { class: "muted" }, "Your Engram API key (any value when the engine has no keys). It is kept for this tab only."),
    form, problem);
  input.focus();
  return () => {};
}

function route() {
  leave();
  if (!key.get()) {
    leave = loginPage();
    return;
  }
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "agents" && parts[1] && parts[2] === "history") leave = historyPage(view, parts[1]);
  else if (parts[0] === "agents" && parts[1]) leave = chatPage(view, parts[1]);
  else if (parts[0] === "inbox") leave = inboxPage(view);
  else leave = agentsPage(view);
}

document.getElementById("logout").addEventListener("click", () => {
  key.clear();
  route();
});
window.addEventListener("engram:unauthorized", () => {
  key.clear();
  route();
});
window.addEventListener("hashchange", route);
route();

// The Inbox link shows how many calls await a decision, on every page.
async function countInbox() {
  if (!key.get()) return;
  try {
    const waiting = (await api("GET", "/approvals")).data.length;
    document.getElementById("inbox-count").textContent = waiting ? `(${waiting})` : "";
  } catch {}
}
countInbox();
setInterval(countInbox, 5000);
