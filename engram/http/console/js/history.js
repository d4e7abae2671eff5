// An agent's whole transcript, a search over it, and a fork or a rewind at any message.
import { api, events } from "./api.js";
import { el, show, when } from "./dom.js";
import { messageNode } from "./transcript.js";

const TURN_ENDS = new Set(["final_answer", "error"]);

export function historyPage(view, agentId) {
  const path = `/agents/${encodeURIComponent(agentId)}`;
  const stop = new AbortController();
  const transcript = el("div", { class: "transcript", id: "history" });
  const hits = el("div", { id: "hits" });
  const problem = el("p", { class: "error-line" });
  const notice = el("p", { id: "notice" });
  const query = el("input", { name: "q", type: "search", placeholder: "Search this agent's history", size: 40 });

  const fork = (seq) => async () => {
    try {
      const forked = await api("POST", `${path}/fork`, { at_sequence: Number(seq) });
      location.hash = `#/agents/${encodeURIComponent(forked.agent_id)}`;
    } catch (err) {
      problem.textContent = err.message;
    }
  };

  // The forgotten messages stay readable in a branch agent, which the page then links to.
  const rewind = (seq) => async () => {
    if (!confirm(`Rewind this agent to message #${seq}? What came after stays readable in a branch agent.`)) return;
    try {
      const done = await api("POST", `${path}/rewind`, { to_sequence: Number(seq) });
      const branch = `#/agents/${encodeURIComponent(done.branch_agent_id)}`;
      [...transcript.querySelectorAll(".msg")].filter((node) => Number(node.dataset.seq) > Number(seq)).forEach((node) => node.remove());
      notice.replaceChildren("Rewound. What came after is in ", el("a", { href: branch }, "its branch"), ".");
      problem.textContent = "";
    } catch (err) {
      problem.textContent = err.message;
    }
  };

  function onEvent(kind, message) {
    const node = messageNode(kind, message);
    if (!node) return;
    // A fork or a rewind keeps whole turns: offer them where a turn ends.
    if (TURN_ENDS.has(kind)) {
      node.append(" ", el("button", { type: "button", class: "fork", onclick: fork(message.sequence_id) }, "Fork here"),
        " ", el("button", { type: "button", class: "fork", onclick: rewind(message.sequence_id) }, "Rewind here"));
    }
    transcript.append(node);
  }

  const jump = (seq) => () => transcript.querySelector(`[data-seq="${CSS.escape(String(seq))}"]`)?.scrollIntoView();

  const search = el("form", { class: "row", onsubmit: async (event) => {
    event.preventDefault();
    try {
      const found = await api("GET", `${path}/search?q=${encodeURIComponent(query.value)}`);
      const list = found.hits || [];
      hits.replaceChildren(...(list.length ? list.map((hit) => el("div", { class: "card hit", "data-seq": hit.sequence_id },
        el("span", { class: "tag" }, `#${hit.sequence_id} ${hit.kind} ${hit.code || ""} ${when(hit.time)}`), " ",
        el("span", {}, hit.excerpt), " ",
        el("button", { type: "button", onclick: jump(hit.sequence_id) }, "Show"))) : [el("p", { class: "muted" }, "No match.")]));
      problem.textContent = "";
    } catch (err) {
      problem.textContent = err.message;
    }
  } }, query, el("button", { class: "primary", type: "submit" }, "Search"));

  show(view, el("h1", {}, "History"),
    el("p", {}, el("a", { href: `#/agents/${encodeURIComponent(agentId)}` }, "Back to the chat")),
    search, hits, problem, notice, transcript);
  events(`${path}/events?include_history=true`, onEvent, stop.signal).catch((err) => {
    if (!stop.signal.aborted) problem.textContent = err.message;
  });
  return () => stop.abort();
}
