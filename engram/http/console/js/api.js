// The HTTP API, with the key kept in sessionStorage and sent as a bearer token.
const KEY = "engram.apiKey";

export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${key.get() || ""}`, ...extra };
}

async function failure(reply) {
  let message = reply.statusText;
  try {
    message = (await reply.json()).error.message;
  } catch {}
  if (reply.status === 401) window.dispatchEvent(new Event("engram:unauthorized"));
  return new ApiError(reply.status, message);
}

export async function api(method, path, body) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const reply = await fetch(`/v1${path}`, init);
  if (!reply.ok) throw await failure(reply);
  return reply.json();
}

// Server-sent events over fetch (an EventSource cannot send the Authorization header).
export async function events(path, onEvent, signal) {
  const reply = await fetch(`/v1${path}`, { headers: headers(), signal });
  if (!reply.ok) throw await failure(reply);
  const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { event: "message", data: "" };
      for (const line of block.split("\n")) {
        const at = line.indexOf(":");
        const field = line.slice(0, at), text = line.slice(at + 1).replace(/^ /, "");
        if (field === "data") event.data += (event.data ? "\n" : "") + text;
        else if (field === "event" || field === "id") event[field] = text;
      }
      onEvent(event.event, JSON.parse(event.data), event.id);
    }
  }
}
