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
  const files = []; // attachments for the next message: {name, mime_type, data (base64)}
  const chips = el("div", { class: "attachments", id: "attachments" });
  const picker = el("input", { type: "file", multiple: true, class: "picker", "aria-label": "Attach files",
    onchange: () => addFiles(picker.files).finally(() => { picker.value = ""; }) });
  const queued = new Map(); // message id -> the queued element, until the agent records it
  const drafts = new Map(); // message id -> the reply being streamed
  let last = 0;
  let following = false;
  let sending = 0;
  let loaded; // the transcript so far, streamed once as the page opens

  const add = (node) => {
    transcript.append(node);
    transcript.scrollTop = transcript.scrollHeight;
  };

  function onEvent(kind, message) {
    last = Math.max(last, Number(message.sequence_id || 0));
    const turn = message.message_id;
    let sentWith = [];
    if (kind === "user_message" && queued.has(turn)) {
      sentWith = [...queued.get(turn).querySelectorAll(".chip")];
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
    // The transcript keeps the files, not their names: show what this tab sent.
    if (node && sentWith.length) node.append(el("div", { class: "attachments" }, sentWith));
  }

  const base64 = (file) => new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });

  // The gateway decides what the model can take (images, UTF-8 text) and says why it refuses.
  async function addFiles(list) {
    for (const file of list) {
      files.push({ name: file.name, mime_type: file.type || "text/plain", data: await base64(file) });
    }
    showFiles();
  }

  const chip = (name, remove) => el("span", { class: "chip" }, `📎 ${name}`,
    remove ? el("button", { type: "button", "aria-label": `Remove ${name}`, onclick: remove }, "×") : null);

  function showFiles() {
    chips.replaceChildren(...files.map((file, i) => chip(file.name, () => { files.splice(i, 1); showFiles(); })));
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
      // A message sent while the transcript still loads is followed from where it ends, not
      // from its start: else the turns so far would be shown twice.
      await loaded;
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

  async function send(content, attachments) {
    const id = crypto.randomUUID().replaceAll("-", "");
    const busy = sending > 0 || BUSY.has(status.textContent);
    const node = el("div", { class: `msg user ${busy ? "queued" : "sending"}`, "data-queued": id },
      el("span", { class: "tag" }, busy ? "queued" : "sending"), content,
      attachments.length ? el("div", { class: "attachments" }, attachments.map((file) => chip(file.name))) : null);
    queued.set(id, node);
    add(node);
    sending += 1;
    follow();
    try {
      await api("POST", `${path}/messages`, { content, message_id: id, attachments });
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
    if (!content && !files.length) return;
    input.value = "";
    const attachments = files.splice(0);
    showFiles();
    send(content, attachments);
  } }, input, el("label", { class: "attach" }, "Attach", picker), el("button", { class: "primary", type: "submit" }, "Send"));
  // Files dropped anywhere on the conversation are attached to the next message.
  for (const zone of [transcript, form]) {
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      form.classList.add("dropping");
    });
    zone.addEventListener("dragleave", () => form.classList.remove("dropping"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      form.classList.remove("dropping");
      addFiles(event.dataTransfer.files).catch((err) => { problem.textContent = err.message; });
    });
  }
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
    transcript, chips, form, problem);

  loaded = (async () => {
    await refreshAgent();
    await events(`${path}/events?include_history=true`, onEvent, stop.signal);
  })();
  loaded.then(follow, (err) => {
    if (!stop.signal.aborted) problem.textContent = err.message;
  });
  const timer = setInterval(() => refreshAgent().catch(() => {}), 2000);
  return () => {
    stop.abort();
    clearInterval(timer);
  };
}
