// fluxd's dashboard. Every URL is relative to the page, so it works under a
// path prefix and through `kubectl port-forward`. It holds one page of
// workloads at a time and re-fetches only what the stream says changed.
"use strict";

const PAGE = 100;
const TOKEN_KEY = "fluxd-api-token";
const STEPS = ["queued", "committed", "pushed", "applied", "ready"];

const state = {
  namespace: "",
  search: "",
  offset: 0,
  total: 0,
  rows: [],        // the workloads of the page shown
  detail: null,    // the id of the workload whose images are shown
  images: null,    // its WorkloadImages
  pending: null,   // the release confirmed, waiting to be applied
  commitUrl: null, // a commit's web page, `{commit}` for its id, when there is one
  asked: 0,        // increases with each page request, so a late answer is dropped
};

const $ = (id) => document.getElementById(id);

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function say(text, isError) {
  const box = $("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = !text;
}

async function answer(response) {
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!response.ok) {
    const why = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    const error = new Error(why);
    error.status = response.status;
    throw error;
  }
  return body;
}

async function get(path) {
  return answer(await fetch(path, { headers: { Accept: "application/json" } }));
}

// The token, asked for once and kept for this tab only.
function askToken() {
  const dialog = $("token-dialog");
  const input = $("token-input");
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const token = dialog.returnValue === "use" ? input.value.trim() : "";
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      resolve(token || null);
    }, { once: true });
    dialog.showModal();
    input.focus();
  });
}

async function token() {
  return sessionStorage.getItem(TOKEN_KEY) || askToken();
}

// A state-changing call: with the token, and a refused token forgotten so the
// next action asks again.
async function post(path, body) {
  const bearer = await token();
  if (!bearer) throw new Error("no API token given: nothing was changed");
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${bearer}` },
    body: JSON.stringify(body),
  });
  try {
    return await answer(response);
  } catch (error) {
    if (error.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      error.message = `fluxd refused the API token (${error.message}); nothing was changed`;
    }
    throw error;
  }
}

// ---- workloads ----------------------------------------------------------

function pageQuery() {
  const query = new URLSearchParams({ offset: state.offset, limit: PAGE });
  if (state.namespace) query.set("namespace", state.namespace);
  if (state.search) query.set("q", state.search);
  return `api/v1/workloads/page?${query}`;
}

async function loadPage() {
  const asked = ++state.asked;
  let page;
  try {
    page = await get(pageQuery());
  } catch (error) {
    say(`Workloads could not be listed: ${error.message}`, true);
    return;
  }
  if (asked !== state.asked) return;
  state.rows = page.workloads;
  state.total = page.total;
  showNamespaces(page.namespaces);
  renderRows();
}

function showNamespaces(namespaces) {
  const select = $("namespace");
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join("\n") === namespaces.join("\n")) return;
  select.replaceChildren(element("option", { value: "" }, "all"),
    ...namespaces.map((ns) => element("option", { value: ns }, ns)));
  select.value = state.namespace;
}

function badges(policies) {
  const out = [];
  if (policies.automated) out.push(element("span", { class: "badge automated" }, "automated"));
  if (policies.locked) {
    const why = [policies.locked_msg, policies.locked_user && `by ${policies.locked_user}`]
      .filter(Boolean).join(" ");
    out.push(element("span", { class: "badge locked", title: why || "locked" },
      why ? `locked: ${why}` : "locked"));
  }
  if (policies.ignore) out.push(element("span", { class: "badge" }, "ignored"));
  for (const [container, policy] of Object.entries(policies.tags || {})) {
    out.push(element("span", { class: "badge" }, `${container}: ${policy}`));
  }
  return out;
}

function status(workload) {
  const parts = [];
  const rollout = workload.rollout;
  if (rollout) {
    parts.push(element("span", { class: `status status-${rollout.status}` }, rollout.status),
      ` ${rollout.ready}/${rollout.desired}`);
    for (const m of rollout.messages || []) parts.push(element("div", { class: "error" }, m));
  }
  if (workload.sync_error) parts.push(element("div", { class: "error" }, `sync: ${workload.sync_error}`));
  if (workload.read_error) parts.push(element("div", { class: "error" }, workload.read_error));
  return parts;
}

function renderRows() {
  const body = document.querySelector("#workloads tbody");
  const rows = [];
  for (const workload of state.rows) {
    const containers = workload.containers.length ? workload.containers : [{ name: "", image: "" }];
    containers.forEach((container, index) => {
      const row = element("tr", { "data-workload": workload.id, "data-container": container.name });
      if (index === 0) {
        const span = { rowspan: containers.length };
        row.append(
          element("th", { scope: "row", ...span },
            element("button", { type: "button", class: "workload-name", onclick: () => openDetail(workload.id) }, workload.id)),
        );
      }
      row.append(
        element("td", {}, container.name),
        element("td", { class: "image" }, container.image),
        element("td", { class: "running" }, container.live_image || (workload.rollout ? container.image : "")),
      );
      if (index === 0) {
        const span = { rowspan: containers.length };
        row.append(
          element("td", { class: "policies", ...span }, badges(workload.policies || {})),
          element("td", { class: "status", ...span }, status(workload)),
        );
      }
      rows.push(row);
    });
  }
  body.replaceChildren(...rows);
  const last = Math.min(state.offset + state.rows.length, state.total);
  $("count").textContent = `${state.total} workload${state.total === 1 ? "" : "s"}`;
  $("page").textContent = state.total ? `${state.offset + 1}–${last} of ${state.total}` : "none";
  $("previous").disabled = state.offset === 0;
  $("next").disabled = last >= state.total;
  // For the bench: when rows rendered reach the screen (the frame after).
  requestAnimationFrame(() => performance.mark("fluxd:rows"));
}

// ---- one workload: images and actions -----------------------------------

async function openDetail(id) {
  state.detail = id;
  $("detail").hidden = false;
  document.querySelector("main").classList.add("with-detail");
  $("detail-title").textContent = id;
  await loadDetail();
  $("detail-title").setAttribute("tabindex", "-1");
  $("detail-title").focus();
}

function closeDetail() {
  state.detail = null;
  state.images = null;
  $("detail").hidden = true;
  document.querySelector("main").classList.remove("with-detail");
}

function detailWorkload() {
  return state.rows.find((w) => w.id === state.detail) || null;
}

async function loadDetail() {
  if (!state.detail) return;
  const id = state.detail;
  let images;
  let workload = detailWorkload();
  try {
    [images] = await get(`api/v1/images?workload=${encodeURIComponent(id)}`);
    if (!workload) {
      const page = await get(`api/v1/workloads/page?q=${encodeURIComponent(id)}&limit=${PAGE}`);
      workload = page.workloads.find((w) => w.id === id) || null;
    }
  } catch (error) {
    say(`${id}: ${error.message}`, true);
    return;
  }
  if (state.detail !== id) return;
  state.images = images || null;
  renderDetail(workload);
}

function created(tag) {
  return tag.created ? new Date(tag.created).toISOString().replace(".000Z", "Z") : "";
}

function renderDetail(workload) {
  const policies = (workload && workload.policies) || {};
  $("detail-policies").replaceChildren(...badges(policies));
  $("automate").textContent = policies.automated ? "Deautomate" : "Automate";
  $("lock").textContent = policies.locked ? "Unlock" : "Lock";
  $("lock-message").disabled = !!policies.locked;
  const containers = state.images ? state.images.containers : [];
  $("containers").replaceChildren(...containers.map(renderContainer));
}

// A tag whose image needs a cosign signature and has none that verifies.
function unsigned(tag) {
  return tag.signature && tag.signature.state === "unsigned";
}

function renderContainer(container) {
  const name = `tag-${container.name}`;
  const runningAt = container.available.findIndex((t) => t.tag === container.current);
  const rows = container.available.map((tag, index) => {
    const running = tag.tag === container.current;
    const newer = runningAt === -1 ? false : index < runningAt;
    const input = element("input", { type: "radio", name, value: tag.tag, id: `${name}-${index}` });
    if (index === 0) input.checked = true;
    return element("tr", { class: running ? "running-tag" : newer ? "newer" : "" },
      element("td", {}, input),
      element("td", {}, element("label", { for: `${name}-${index}` }, tag.tag)),
      element("td", {}, created(tag)),
      element("td", {}, running ? "running" : newer ? "newer" : "",
        unsigned(tag) ? element("span", { class: "badge", title: tag.signature.reason }, "unsigned") : null));
  });
  const policy = element("input", { type: "text", id: `policy-${container.name}`, value: container.policy });
  const preview = element("div", { class: "policy-preview", "aria-live": "polite" });
  let timer = null;
  policy.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => previewPolicy(container.name, policy.value, preview), 150);
  });
  return element("section", { class: "container", "data-container": container.name },
    element("h3", {}, `${container.name}: ${container.repository}:${container.current}`),
    container.error ? element("p", { class: "error" }, container.error) : null,
    element("table", { class: "tags" },
      element("caption", { class: "hidden" }, `Tags of ${container.repository}, newest first`),
      element("thead", {}, element("tr", {},
        element("th", { scope: "col" }, element("span", { class: "hidden" }, "choose")),
        element("th", { scope: "col" }, "Tag"), element("th", { scope: "col" }, "Created"),
        element("th", { scope: "col" }, ""))),
      element("tbody", {}, rows)),
    element("div", { class: "actions" },
      element("button", { type: "button", class: "release", onclick: () => releaseChosen(container) }, "Release chosen tag")),
    element("div", { class: "actions" },
      element("label", { for: `policy-${container.name}` }, "Tag policy"), policy,
      element("button", { type: "button", onclick: () => savePolicy(container.name, policy.value) }, "Save policy")),
    preview);
}

async function previewPolicy(container, text, into) {
  const query = new URLSearchParams({ workload: state.detail, container, policy: text });
  try {
    const check = await get(`api/v1/policy/check?${query}`);
    into.textContent = `${check.policy} admits ${check.admitted.length}, leaves out ${check.refused}: `
      + check.admitted.map((t) => t.tag).join(", ");
  } catch (error) {
    into.textContent = error.message;
  }
}

async function submit(spec, what) {
  try {
    const submitted = await post("api/v1/jobs", spec);
    say(`${what}: job ${submitted.id} queued`);
    return submitted.id;
  } catch (error) {
    say(`${what}: ${error.message}`, true);
    return null;
  }
}

async function toggleAutomated() {
  const workload = detailWorkload();
  if (!workload) return;
  const automated = !workload.policies.automated;
  await submit({ kind: "policy", changes: [{ workload: workload.id, automated }] },
    `${automated ? "Automate" : "Deautomate"} ${workload.id}`);
}

async function toggleLocked() {
  const workload = detailWorkload();
  if (!workload) return;
  const locked = !workload.policies.locked;
  const message = $("lock-message").value.trim();
  const spec = { kind: "policy", changes: [{ workload: workload.id, locked }] };
  if (message) spec.message = message;
  await submit(spec, `${locked ? "Lock" : "Unlock"} ${workload.id}`);
}

async function savePolicy(container, text) {
  const tags = {};
  tags[container] = text.trim();
  await submit({ kind: "policy", changes: [{ workload: state.detail, tags }] },
    `Tag policy of ${state.detail} ${container}`);
}

function releaseChosen(container) {
  const chosen = document.querySelector(`input[name="tag-${CSS.escape(container.name)}"]:checked`);
  if (!chosen) return;
  const containers = {};
  containers[state.detail] = [container.name];
  release({
    targets: { workloads: [state.detail] },
    update: { image: `${container.repository}:${chosen.value}` },
    containers,
  });
}

function releaseLatest() {
  if (!state.detail) return;
  release({ targets: { workloads: [state.detail] }, update: "all_latest" });
}

// Preview first (the exact lines), then the release only once confirmed.
async function release(spec) {
  let preview;
  try {
    preview = await post("api/v1/release/preview", spec);
  } catch (error) {
    say(`Release: ${error.message}`, true);
    return;
  }
  const lines = $("release-lines");
  lines.replaceChildren();
  for (const line of preview.lines) {
    lines.append(element("span", {}, `${line.file} (${line.workload}, line ${line.line} of its document)\n`),
      element("span", { class: "del" }, `- ${line.before.trim()}`),
      element("span", { class: "add" }, `+ ${line.after.trim()}`));
  }
  const changing = preview.plan.filter((r) => r.status === "success");
  const others = preview.plan.filter((r) => r.status !== "success" && r.status !== "ignored")
    .map((r) => `${r.workload}: ${r.status}${r.error ? ` (${r.error})` : ""}`);
  $("release-summary").textContent = changing.length
    ? `${preview.lines.length} line${preview.lines.length === 1 ? "" : "s"} will change.` + (others.length ? ` ${others.join("; ")}` : "")
    : `Nothing to release. ${others.join("; ")}`;
  $("release-confirm").disabled = changing.length === 0;
  const dialog = $("release-dialog");
  $("release-message").value = "";
  const confirmed = await new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
    (changing.length ? $("release-confirm") : $("release-cancel")).focus();
  });
  if (!confirmed) {
    say("Release cancelled: nothing was changed");
    return;
  }
  const message = $("release-message").value.trim();
  const job = { kind: "release", ...spec };
  if (message) job.message = message;
  state.pending = await submit(job, "Release");
}

// ---- activity -----------------------------------------------------------

function timeline(job) {
  const t = job.timeline || {};
  return element("ol", { class: "timeline", "aria-label": "timeline" },
    STEPS.map((step) => element("li", { class: t[step] ? "done" : "", title: t[step] || "not yet" },
      t[step] ? `${step} ${new Date(t[step]).toLocaleTimeString()}` : step)));
}

function jobTargets(spec) {
  if (spec.kind === "release") {
    const targets = spec.targets === "all" ? "all workloads" : spec.targets.workloads.join(", ");
    const update = spec.update === "all_latest" ? "latest images" : spec.update.image;
    return `release ${update} to ${targets}`;
  }
  if (spec.kind === "policy") return `policy: ${spec.changes.map((c) => c.workload).join(", ")}`;
  return `automation: ${(spec.workloads || []).join(", ")}`;
}

async function loadJobs() {
  let jobs;
  try {
    jobs = await get("api/v1/jobs");
  } catch (error) {
    say(`Jobs could not be listed: ${error.message}`, true);
    return;
  }
  $("jobs").replaceChildren(...jobs.slice(0, 50).map((job) => element("li", { "data-job": job.id },
    element("strong", {}, job.status), ` ${jobTargets(job.spec)} `,
    job.commit ? commitShown(job.commit) : null,
    job.error ? element("div", { class: "error" }, job.error) : null,
    (job.apply_errors || []).map((e) => element("div", { class: "error" }, `${e.id}: ${e.error}`)),
    timeline(job))));
  if (state.pending) {
    const job = jobs.find((j) => j.id === state.pending);
    if (job && job.status === "failed") say(`Release failed: ${job.error}`, true);
    if (job && job.status === "succeeded" && job.commit) say(`Released in ${job.commit.slice(0, 12)}`);
  }
}

// A commit's id, linked to its page when the repo has a web form.
function commitShown(commit) {
  const code = element("code", { title: commit }, commit.slice(0, 12));
  if (!state.commitUrl) return code;
  return element("a", { href: state.commitUrl.replace("{commit}", commit), rel: "noreferrer" }, code);
}

async function loadRevision() {
  try {
    const read = await get("api/v1/sync");
    state.commitUrl = read.commit_url || null;
    const parts = ["git ", commitShown(read.revision)];
    if (read.synced === read.revision) parts.push(", synced");
    else if (read.synced) parts.push("; synced at ", commitShown(read.synced));
    if (read.errors.length) parts.push(`, ${read.errors.length} file(s) unreadable`);
    $("revision").replaceChildren(...parts);
  } catch (error) {
    $("revision").textContent = error.message;
  }
}

// ---- live ---------------------------------------------------------------

function follow() {
  const stream = new EventSource("api/v1/stream");
  stream.addEventListener("hello", () => { $("live").textContent = "live"; });
  stream.addEventListener("workloads", (event) => {
    const change = JSON.parse(event.data);
    const shown = new Set(state.rows.map((w) => w.id));
    const touches = (ids) => ids.some((id) => shown.has(id));
    // Only the page shown is fetched again, and only when it is concerned.
    const reshape = change.removed.length > 0 || change.changed.some((id) => !shown.has(id));
    if (touches(change.changed) || reshape) loadPage().then(() => {
      if (state.detail && change.changed.includes(state.detail)) loadDetail();
    });
    else if (state.detail && change.images) loadDetail();
    if (change.revision) loadRevision();
  });
  // A job applied is a sync that moved the marker.
  stream.addEventListener("jobs", () => { loadJobs(); loadRevision(); });
  stream.onerror = () => { $("live").textContent = "reconnecting…"; };
}

// ---- views and controls -------------------------------------------------

function showView() {
  const activity = location.hash === "#activity";
  $("workloads-view").hidden = activity;
  $("activity-view").hidden = !activity;
  if (activity) closeDetail();
  $("nav-workloads").toggleAttribute("aria-current", !activity);
  $("nav-activity").toggleAttribute("aria-current", activity);
  if (activity) {
    $("nav-activity").setAttribute("aria-current", "page");
    loadJobs();
  } else {
    $("nav-workloads").setAttribute("aria-current", "page");
  }
}

function start() {
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("search").addEventListener("input", (event) => {
    state.search = event.target.value.trim();
    state.offset = 0;
    loadPage();
  });
  $("namespace").addEventListener("change", (event) => {
    state.namespace = event.target.value;
    state.offset = 0;
    loadPage();
  });
  $("previous").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadPage(); });
  $("next").addEventListener("click", () => { state.offset += PAGE; loadPage(); });
  $("automate").addEventListener("click", toggleAutomated);
  $("lock").addEventListener("click", toggleLocked);
  $("release-latest").addEventListener("click", releaseLatest);
  $("close-detail").addEventListener("click", closeDetail);
  $("token-button").addEventListener("click", askToken);
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && document.activeElement.tagName !== "INPUT") {
      event.preventDefault();
      $("search").focus();
    }
  });
  window.addEventListener("hashchange", showView);
  showView();
  loadPage();
  // The commits' links need the repo's web form first.
  loadRevision().then(loadJobs);
  follow();
}

start();
