// The inspection page: drop an image, see the label, the top 5 and the heatmap; the model card and
// live figures beside. Talks only to this service (/classify, /model, /metrics); no library, no build.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "ilcs-api-key";

function headers() {
  const key = sessionStorage.getItem(KEY);
  return key ? { "X-API-Key": key } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (response.status === 401) {
    askForKey(sessionStorage.getItem(KEY) ? "that key was refused" : "");
    throw new Error("an API key is needed");
  }
  return response;
}

function askForKey(message) {
  $("key-panel").hidden = false;
  $("key-error").textContent = message;
}

function field(list, name, value) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  list.append(dt, dd);
}

async function loadCard() {
  const response = await api("/model");
  if (!response.ok) {
    $("model-line").textContent = `model card unavailable (${response.status}); the service may be warming up`;
    setTimeout(loadCard, 3000);
    return;
  }
  const card = await response.json();
  const s = card.serving;
  $("model-line").textContent = `${card.name} ${card.version} on ${s.device} (${s.dtype}), batch up to ${s.max_batch_size}`;
  const list = $("card-fields");
  list.replaceChildren();
  field(list, "model", `${card.name} ${card.version} (${card.arch})`);
  field(list, "classes", card.labels.join(", "));
  field(list, "input", `${card.input_size} × ${card.input_size}, mean ${card.mean}, std ${card.std}`);
  for (const [name, value] of Object.entries(card.metrics || {})) {
    if (typeof value !== "number") field(list, name, value);
    else if (name.includes("top")) field(list, name, `${(100 * value).toFixed(2)} %`);
    else field(list, name, Number.isInteger(value) ? value : value.toPrecision(3));
  }
  field(list, "weights sha256", card.weights_sha256);
  field(list, "serving", `${s.workers} worker(s) × ${s.threads} thread(s), delay ${s.max_delay_ms} ms, queue ${s.queue_size}`);
}

function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/);
    if (m) samples.push({ name: m[1], labels: m[2] || "", value: Number(m[3]) });
  }
  return samples;
}

async function loadLive() {
  try {
    const response = await fetch("/metrics");
    const samples = parseMetrics(await response.text());
    const sum = (name, test = () => true) =>
      samples.filter((s) => s.name === name && test(s.labels)).reduce((a, s) => a + s.value, 0);
    const list = $("live-fields");
    list.replaceChildren();
    field(list, "classify requests", sum("ilcs_requests_total", (l) => l.includes('route="/classify')));
    field(list, "classify errors (4xx/5xx)",
      sum("ilcs_requests_total", (l) => l.includes('route="/classify') && /status="[45]/.test(l)));
    field(list, "low-confidence", sum("ilcs_low_confidence_total"));
    field(list, "queue now", sum("ilcs_queue_depth"));
    field(list, "in flight", sum("ilcs_requests_in_flight"));
    const counts = $("class-counts");
    counts.replaceChildren();
    for (const s of samples.filter((x) => x.name === "ilcs_predictions_total")) {
      const li = document.createElement("li");
      li.textContent = `${s.labels.match(/label="([^"]*)"/)[1]}: ${s.value}`;
      counts.append(li);
    }
  } catch (error) {
    $("live-fields").textContent = `metrics unavailable: ${error.message}`;
  }
}

async function classify(file) {
  $("status").textContent = `classifying ${file.name}…`;
  $("status").classList.remove("error");
  const form = new FormData();
  form.append("file", file, file.name);
  const kind = $("heatmap-kind").value;
  let answer;
  try {
    const response = await api(`/classify?heatmap=${encodeURIComponent(kind)}`, { method: "POST", body: form });
    answer = await response.json();
    if (!response.ok) throw new Error(`${answer.title || response.status}: ${answer.detail || ""}`);
  } catch (error) {
    $("status").textContent = error.message;
    $("status").classList.add("error");
    return;
  }
  $("status").textContent = `${file.name}: request ${answer.request_id}`;
  $("result").hidden = false;
  $("label").textContent = answer.label;
  $("confidence").textContent = `${(100 * answer.confidence).toFixed(1)} %`;
  $("low-confidence").hidden = !answer.low_confidence;
  $("image").src = URL.createObjectURL(file);
  if (answer.heatmap) $("heatmap").src = `data:image/png;base64,${answer.heatmap.data}`;
  const top5 = $("top5");
  top5.replaceChildren();
  for (const t of answer.top5) {
    const li = document.createElement("li");
    li.textContent = `${t.label} ${(100 * t.score).toFixed(1)} %`;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.max(1, Math.round(150 * t.score))}px`;
    li.append(bar);
    top5.append(li);
  }
  const t = answer.timing_ms;
  const ms = (x) => `${x.toFixed(1)} ms`;
  $("timing").textContent =
    `${answer.width} × ${answer.height} px; queue ${ms(t.queue_ms)}, model ${ms(t.inference_ms)}, total ${ms(t.total_ms)}`;
  loadLive();
}

function setUp() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => e.target.files[0] && classify(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) classify(e.dataTransfer.files[0]);
  });
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $("api-key").value.trim());
    $("key-panel").hidden = true;
    loadCard().catch(() => {});
  });
  loadCard().catch(() => {});
  loadLive();
  setInterval(loadLive, 5000);
}

setUp();
