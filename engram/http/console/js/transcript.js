// One transcript message (a ServerMessage in JSON) as an element; tool calls and results inline.
import { el, pretty } from "./dom.js";

export function messageNode(kind, message) {
  const body = message[kind] || {};
  const seq = message.sequence_id;
  const node = (cls, tag, ...content) =>
    el("div", { class: `msg ${cls}`, "data-seq": seq, "data-kind": kind }, el("span", { class: "tag" }, tag), ...content);
  switch (kind) {
    case "user_message":
      return node("user", "you", body.content);
    case "final_answer":
      return node("assistant", "agent", body.content);
    case "thought":
      return node("notice", "thinking", body.content);
    case "observation":
      return node("notice", "observed", body.content);
    case "tool_call":
      return node("tool", `call ${body.tool_name}`, el("pre", {}, pretty(body.input_json)));
    case "tool_result":
      return node(body.is_error ? "tool error" : "tool", "result", el("pre", {}, body.is_error ? body.error_message || body.output : body.output));
    case "error":
      return node("error", body.code || "error", body.message);
    case "status":
      return node("notice", "status", [body.status, body.message].filter(Boolean).join(": "));
    default:
      return null; // heartbeats, and streamed text (the chat shows that as it comes)
  }
}
