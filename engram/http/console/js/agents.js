// The agents list: live status, filter, and a form to create one.
import { api } from "./api.js";
import { el, show, when } from "./dom.js";

const STATUSES = ["", "idle", "working", "waiting", "paused", "sleeping", "needs_attention", "deleted"];

function row(agent) {
  const cost = agent.stats?.cost_usd ?? agent.run?.cost_usd;
  return el("tr", { "data-agent": agent.agent_id },
    el("td", {}, el("a", { href: `#/agents/${encodeURIComponent(agent.agent_id)}` }, agent.goal || agent.agent_id)),
    el("td", {}, agent.model || ""),
    el("td", {}, el("span", { class: `status ${agent.status}` }, agent.status)),
    el("td", {}, when(agent.updated_at || agent.created_at)),
    el("td", {}, cost ? `$${Number(cost).toFixed(4)}` : ""));
}

export function agentsPage(view) {
  const filter = el("select", { name: "status" }, STATUSES.map((s) => el("option", { value: s }, s || "any status")));
  const body = el("tbody");
  const problem = el("p", { class: "error-line" });
  const goal = el("input", { name: "goal", placeholder: "Goal", required: true, size: 40 });
  const model = el("input", { name: "model", placeholder: "Model", required: true });
  const create = el("form", { class: "row", onsubmit: async (event) => {
    event.preventDefault();
    try {
      const made = await api("POST", "/agents", { goal: goal.value, model: model.value });
      location.hash = `#/agents/${encodeURIComponent(made.agent_id)}`;
    } catch (err) {
      problem.textContent = err.message;
    }
  } }, goal, model, el("button", { class: "primary", type: "submit" }, "Create agent"));

  async function refresh() {
    try {
      const query = filter.value ? `&status=${encodeURIComponent(filter.value)}` : "";
      const listed = await api("GET", `/agents?page_size=100${query}`);
      body.replaceChildren(...(listed.agents || []).map(row));
      problem.textContent = "";
    } catch (err) {
      problem.textContent = err.message;
    }
  }
  filter.addEventListener("change", refresh);
  show(view, el("h1", {}, "Agents"), create, problem,
    el("p", {}, "Show ", filter),
    el("table", {}, el("thead", {}, el("tr", {}, ["Goal", "Model", "Status", "Last activity", "Cost"].map((h) => el("th", {}, h)))), body));
  refresh();
  const timer = setInterval(refresh, 2000);
  return () => clearInterval(timer);
}
