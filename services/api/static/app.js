"use strict";
// The ghibli-lora web page: plain JavaScript over the gateway's JSON API.

const tokenInput = document.getElementById("token");
tokenInput.value = localStorage.getItem("ghibli-token") || "";
tokenInput.addEventListener("change", () => localStorage.setItem("ghibli-token", tokenInput.value));

function headers(extra = {}) {
  const token = tokenInput.value.trim();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = JSON.stringify((await response.json()).detail); } catch (_) { /* not JSON */ }
    throw new Error(`${options.method || "GET"} ${path}: ${response.status} ${detail}`);
  }
  return response.json();
}

// Artifacts may need the bearer token, which <img src> cannot send: fetch them as blobs.
async function artifactUrl(key) {
  const response = await fetch(`/v1/artifacts/${key}`, { headers: headers() });
  if (!response.ok) throw new Error(`artifact ${key}: ${response.status}`);
  return URL.createObjectURL(await response.blob());
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function figure(key, captionNode) {
  const image = element("img", { alt: key, loading: "lazy" });
  artifactUrl(key).then((url) => { image.src = url; }).catch((error) => showError(error.message));
  return element("figure", {}, image, element("figcaption", {}, captionNode));
}

// --- jobs, refreshed every two seconds while the tab is open
async function refreshJobs() {
  const jobs = await api("/v1/jobs");
  const rows = jobs.map((job) => {
    const bar = element("progress", { max: job.progress.total || 1, value: job.progress.total ? job.progress.step : 0 });
    const cancel = job.state === "queued" || job.state === "running"
      ? element("button", { onclick: () => api(`/v1/jobs/${job.id}/cancel`, { method: "POST" }).then(refreshJobs) }, "cancel")
      : "";
    return element("tr", { "data-job": job.id },
      element("td", {}, job.id), element("td", {}, job.type), element("td", { class: `state-${job.state}` }, job.state),
      element("td", {}, bar), element("td", {}, job.error || job.progress.message), element("td", {}, cancel));
  });
  document.getElementById("job-rows").replaceChildren(...rows);
}

// --- datasets, their captions (editable) and raw images
async function refreshDatasets() {
  const datasets = await api("/v1/datasets");
  const items = datasets.map((dataset) => element("li", {},
    element("a", { href: "#", onclick: (event) => { event.preventDefault(); openDataset(dataset); } }, dataset.name),
    ` (${dataset.id})`));
  document.getElementById("dataset-list").replaceChildren(...items);
}

async function openDataset(dataset) {
  document.getElementById("dataset-detail").hidden = false;
  document.getElementById("dataset-title").textContent = `${dataset.name} (${dataset.id})`;
  const images = await api(`/v1/datasets/${dataset.id}/images`);
  const figures = await Promise.all(images.slice(0, 200).map((image) =>
    figure(image.key, `${image.character || ""} ${image.width}×${image.height}`)));
  document.getElementById("image-grid").replaceChildren(...figures);
  await showCaptions(dataset.id);
}

async function showCaptions(datasetId) {
  const note = document.getElementById("caption-note");
  let captions;
  try {
    captions = await api(`/v1/datasets/${datasetId}/captions`);
  } catch (error) {
    note.textContent = "No captions yet (run a caption job).";
    document.getElementById("caption-grid").replaceChildren();
    return;
  }
  note.textContent = "Edit a caption and leave the field to save it; the exports are regenerated, and a rerun " +
    "of the caption job keeps your edits (marked with a bar).";
  const figures = await Promise.all(captions.items.map((item) => {
    const text = element("textarea", { "data-file": item.file_name });
    text.value = item.text;
    text.classList.toggle("edited", item.edited);
    text.addEventListener("change", () =>
      api(`/v1/datasets/${datasetId}/captions/${encodeURIComponent(item.file_name)}`, {
        method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text: text.value }),
      }).then((saved) => {
        text.value = saved.text; // as stored: names scrubbed
        text.classList.add("edited");
        showError("");
      }).catch((error) => showError(error.message)));
    return figure(item.image_key, text);
  }));
  document.getElementById("caption-grid").replaceChildren(...figures);
}

// --- LoRAs with downloads in both formats
async function download(key, name) {
  const link = element("a", { href: await artifactUrl(key), download: name });
  link.click();
}

async function refreshLoras() {
  const loras = await api("/v1/loras");
  const rows = loras.map((lora) => element("tr", {},
    element("td", {}, lora.name), element("td", {}, lora.base_model), element("td", {}, String(lora.rank)),
    element("td", {}, String(lora.steps)),
    element("td", {},
      element("button", { onclick: () => download(lora.diffusers_key, "pytorch_lora_weights.safetensors") }, "diffusers"), " ",
      element("button", { onclick: () => download(lora.kohya_key, `${lora.name}.safetensors`) }, "A1111 / kohya"))));
  document.getElementById("lora-rows").replaceChildren(...rows);
  const select = document.querySelector("select[name=lora_id]");
  select.replaceChildren(element("option", { value: "" }, "(none)"),
    ...loras.map((lora) => element("option", { value: lora.id }, lora.name)));
}

// --- generate: an `infer` job, then its images
document.getElementById("generate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const status = document.getElementById("generate-status");
  const request = {
    prompt: form.get("prompt"), negative_prompt: form.get("negative_prompt"),
    steps: Number(form.get("steps")), seeds: [Number(form.get("seed"))],
    width: Number(form.get("width")), height: Number(form.get("height")),
    loras: form.get("lora_id") ? [{ id: form.get("lora_id"), scale: Number(form.get("lora_scale")) }] : [],
  };
  try {
    const { job_id: jobId } = await api("/v1/jobs/infer", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request) });
    let job;
    do {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      job = await api(`/v1/jobs/${jobId}`);
      status.textContent = `${job.state} ${job.progress.step}/${job.progress.total ?? "?"}`;
    } while (job.state === "queued" || job.state === "running");
    if (job.state !== "succeeded") throw new Error(job.error || job.state);
    const figures = await Promise.all((job.result.images || []).map((key) => figure(key, key.split("/").pop())));
    document.getElementById("generate-output").replaceChildren(...figures);
  } catch (error) {
    showError(error.message);
  }
});

// --- tabs
const loaders = { jobs: refreshJobs, datasets: refreshDatasets, loras: refreshLoras, generate: refreshLoras };
let activeTab = "jobs";
function openTab(name) {
  activeTab = name;
  for (const section of document.querySelectorAll(".tab")) section.hidden = section.id !== name;
  for (const button of document.querySelectorAll("nav button")) button.classList.toggle("active", button.dataset.tab === name);
  loaders[name]().then(() => showError("")).catch((error) => showError(error.message));
}
for (const button of document.querySelectorAll("nav button")) button.addEventListener("click", () => openTab(button.dataset.tab));
setInterval(() => { if (activeTab === "jobs") refreshJobs().catch((error) => showError(error.message)); }, 2000);
openTab("jobs");
