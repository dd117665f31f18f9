// Talking to the service: a JSON request and its answer (a refusal's message as the error). A service beyond
// this machine that lets the page train needs its training key: the page opened as /#key=KEY keeps it for this
// tab (and takes it out of the address bar).
import { t } from "./words.js";

const given = new URLSearchParams(location.hash.slice(1)).get("key");
if (given) {
  sessionStorage.setItem("training-key", given);
  history.replaceState(null, "", location.pathname + location.search);
}
const key = sessionStorage.getItem("training-key");

export async function call(path, body, method = "POST") {
  const headers = { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}) };
  const response = await fetch(path, body === undefined ? {} : { method, headers, body: JSON.stringify(body) });
  const answered = t("server.answered", { status: response.status });
  const answer = await response.json().catch(() => ({ error: answered }));
  if (!response.ok) throw new Error(answer.error || answered);
  return answer;
}
