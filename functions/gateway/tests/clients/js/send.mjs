// Sends CloudEvents to the ripple gateway with the official JavaScript SDK (`cloudevents`), in
// binary and structured mode, for the gateway's interoperability test. The SDK has no batch
// writer (it only reads batches), so batch requests are not part of its plan.
//
// Reads a plan on stdin: {"url", "token", "requests": [{"mode": "binary"|"structured",
// "events": [{"id", "source", "type", "subject", "time", "channel", "priority", "data"}]}]}
// and prints one JSON line per request: {"mode", "status", "body"}.
import { CloudEvent, HTTP } from "cloudevents";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

function toEvent(spec) {
  return new CloudEvent({
    id: spec.id,
    source: spec.source,
    type: spec.type,
    subject: spec.subject,
    time: spec.time,
    datacontenttype: "application/json",
    channel: spec.channel,
    priority: spec.priority,
    data: spec.data,
  });
}

const plan = await readStdin();
for (const request of plan.requests) {
  if (request.events.length !== 1) throw new Error(`${request.mode}: one event per request`);
  const event = toEvent(request.events[0]);
  const serialize = { binary: HTTP.binary, structured: HTTP.structured }[request.mode];
  if (!serialize) throw new Error(`unknown mode ${request.mode}`);
  const message = serialize(event);
  const response = await fetch(plan.url, {
    method: "POST",
    headers: { ...message.headers, Authorization: `Bearer ${plan.token}` },
    body: message.body,
    signal: AbortSignal.timeout(30000),
  });
  const body = await response.text();
  console.log(JSON.stringify({ mode: request.mode, status: response.status, body }));
}
