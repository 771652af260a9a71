// winnow's web app: a read-only browser over the JSON API (/api/v1), signed in with an API key.
//
// Plain modern JavaScript, no build step, nothing loaded from elsewhere. Every string that comes
// from the server is put in the page as text (textContent, text nodes, SVG <text>), never as HTML:
// a project, image, class or tag named "<img src=x onerror=alert(1)>" shows as those characters.
//
// Views (hash routes):
//   #/                          projects of the key's workspace
//   #/p/NAME                    a project: counts, class balance, splits, versions, models, queue, health;
//                               a customer project (a fork): its base and class map; a base project: its
//                               customers (the fleet); any project: its class migrations
//   #/p/NAME/images?split=&tag=&class=&offset=   the image grid, boxes drawn on each thumbnail
//   #/p/NAME/base?offset=       a fork's inherited images (the base version's, read-only), boxes drawn
//   #/p/NAME/image/IMAGE        one image: its boxes, annotations, tags, metadata
// A key can arrive in the fragment (#key=wn_...): it is stored and removed from the address bar.
"use strict";

const API = "/api/v1";
const KEY_ITEM = "winnow.key";
const PAGE_SIZE = 24;
const FIRST_FINDINGS = 10; // shown before "show all"
const MAX_FINDINGS = 500;
const FETCHES_AT_ONCE = 6;
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  key: null, // the API key (also in sessionStorage)
  who: null, // GET /workspace: {workspace, role, key}
  urls: [], // blob: URLs of the current view's images, released on the next render
  view: 0, // increases on every render; an older view's late answers are dropped
  findings: new Map(), // project -> the last health report run in this tab
};

// ------------------------------------------------------------------ DOM helpers (text only)

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  return node;
}

/** An HTML element; string children become text nodes. */
function h(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

/** An SVG element; string children become text nodes. */
function svg(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

function $(id) {
  return document.getElementById(id);
}

function fmt(value, digits = 3) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(digits);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function when(iso) {
  return iso ? String(iso).replace("T", " ").replace(/(\.\d+)?Z$/, "") : "–";
}

// A stable colour per class name (golden-angle hues).
function colour(label) {
  let hash = 0;
  for (const ch of String(label)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${(hash * 137.508) % 360}, 85%, 55%)`;
}

// ------------------------------------------------------------------ the API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") message = body.error;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message);
}

async function call(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.key}` };
  const init = { method: options.method || "GET", headers, cache: "no-store" };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(API + path, init);
  if (!response.ok) throw await failure(response);
  return response;
}

async function api(path, options) {
  const response = await call(path, options);
  return response.status === 204 ? null : response.json();
}

function projectPath(project) {
  return `/projects/${encodeURIComponent(project)}`;
}

function imagePath(project, name) {
  return `${projectPath(project)}/images/${encodeURIComponent(name)}`;
}

/** An inherited image of a fork (``base/<name>``), read through the fork. */
function baseImagePath(project, name) {
  return `${projectPath(project)}/base/images/${encodeURIComponent(name)}`;
}

/** The bytes at ``path``, fetched with the key, as a blob: URL released when the view changes. */
async function blobUrl(path) {
  const blob = await (await call(path)).blob();
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  return url;
}

/** The image's bytes as a blob: URL. */
function imageUrl(project, name) {
  return blobUrl(`${imagePath(project, name)}/file`);
}

/** Run ``work`` over ``items``, at most ``FETCHES_AT_ONCE`` at a time. */
async function eachLimited(items, work) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await work(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(FETCHES_AT_ONCE, items.length) }, worker));
}

// ------------------------------------------------------------------ routes

function href(parts, query) {
  let text = "#/" + parts.map(encodeURIComponent).join("/");
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) if (v !== null && v !== undefined && v !== "") params.set(k, v);
  const q = params.toString();
  return q ? `${text}?${q}` : text;
}

const link = {
  projects: () => "#/",
  project: (p) => href(["p", p]),
  images: (p, filters) => href(["p", p, "images"], filters),
  base: (p, query) => href(["p", p, "base"], query),
  image: (p, name) => href(["p", p, "image", name]),
};

function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?", 2);
  let parts;
  try {
    parts = path ? path.split("/").map(decodeURIComponent) : [];
  } catch {
    parts = ["?"];
  }
  return { parts, query: new URLSearchParams(query || "") };
}

// ------------------------------------------------------------------ sign-in

function takeKeyFromFragment() {
  const match = location.hash.match(/^#key=([^&]*)/);
  if (!match) return;
  let key = match[1];
  try {
    key = decodeURIComponent(key);
  } catch {
    // keep it as written
  }
  if (key) sessionStorage.setItem(KEY_ITEM, key.trim());
  // the key never stays in the address bar (nor in the history entry)
  history.replaceState(null, "", location.pathname + location.search);
}

function signOut(message) {
  sessionStorage.removeItem(KEY_ITEM);
  state.key = null;
  state.who = null;
  state.findings.clear();
  showSignIn(message);
}

function showSignIn(message) {
  releaseUrls();
  state.view++;
  $("main").replaceChildren();
  $("main").hidden = true;
  $("who").hidden = true;
  $("crumbs").replaceChildren();
  $("signin").hidden = false;
  const error = $("signin-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("signin-key").focus();
}

let signIns = 0; // only the latest sign-in's answer counts (a slow earlier one must not undo it)

async function signIn(key) {
  const attempt = ++signIns;
  state.key = key;
  state.who = null;
  let who;
  try {
    who = await api("/workspace");
  } catch (err) {
    if (attempt === signIns) signOut(err instanceof ApiError ? err.message : `cannot reach the server: ${err.message}`);
    return false;
  }
  if (attempt !== signIns) return false;
  state.who = who;
  sessionStorage.setItem(KEY_ITEM, key);
  $("signin").hidden = true;
  $("main").hidden = false;
  $("who").hidden = false;
  $("who-text").textContent = `${state.who.workspace} · ${state.who.role}` + (state.who.key ? ` (key ${state.who.key})` : "");
  $("who-text").title = "the workspace and role of the key in use";
  return true;
}

// ------------------------------------------------------------------ rendering

function releaseUrls() {
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
}

function crumbs(...items) {
  const nav = $("crumbs");
  nav.replaceChildren();
  items.forEach(([text, target], i) => {
    if (i) nav.append(" / ");
    nav.append(target ? h("a", { href: target }, text) : h("span", { class: "here" }, text));
  });
}

function panel(title, attrs, ...children) {
  return h("section", Object.assign({ class: "panel" }, attrs), h("h2", null, title), ...children);
}

function empty(text) {
  return h("p", { class: "muted" }, text);
}

function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, err instanceof Error ? err.message : String(err));
}

function table(headings, rows, attrs) {
  return h(
    "table",
    attrs,
    h("thead", null, h("tr", null, headings.map((t) => h("th", null, t)))),
    h("tbody", null, rows),
  );
}

/** A horizontal bar: ``value`` of ``max``, labelled. */
function bar(label, value, max, note, target) {
  const fill = h("span", { class: "fill" });
  fill.style.width = `${max > 0 ? Math.max(1, (100 * value) / max) : 0}%`;
  fill.style.background = colour(label);
  return h(
    "div",
    { class: "bar-row" },
    target ? h("a", { class: "bar-label", href: target }, label) : h("span", { class: "bar-label" }, label),
    h("span", { class: "bar" }, fill),
    h("span", { class: "bar-value" }, note),
  );
}

async function render() {
  releaseUrls();
  const view = ++state.view;
  if (!state.key) return showSignIn();
  if (!state.who && !(await signIn(state.key))) return;
  const main = $("main");
  main.replaceChildren(h("p", { class: "muted loading" }, "loading…"));
  const { parts, query } = parseRoute();
  let content;
  try {
    if (parts.length === 0) content = await projectsView();
    else if (parts[0] === "p" && parts.length === 2) content = await projectView(parts[1], view);
    else if (parts[0] === "p" && parts.length === 3 && parts[2] === "images") content = await gridView(parts[1], query, view);
    else if (parts[0] === "p" && parts.length === 3 && parts[2] === "base") content = await baseGridView(parts[1], query, view);
    else if (parts[0] === "p" && parts.length === 4 && parts[2] === "image") content = await imageView(parts[1], parts[3], view);
    else content = [h("h1", null, "Not found"), h("p", null, "No such page. ", h("a", { href: "#/" }, "Projects"))];
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return signOut(err.message);
    content = [h("h1", null, "Error"), errorBox(err)];
  }
  if (view !== state.view) return; // the user moved on meanwhile
  main.replaceChildren(...[content].flat().filter((c) => c !== null && c !== undefined && c !== false)); // a view leaves out a panel with null
  window.scrollTo(0, 0);
}

// ------------------------------------------------------------------ projects

async function projectsView() {
  crumbs(["projects"]);
  const projects = await api("/projects");
  const out = [h("h1", null, `Projects of ${state.who.workspace}`)];
  if (!projects.length) {
    out.push(empty("No projects yet: winnow project create NAME --task detect, then winnow import NAME FOLDER."));
    return out;
  }
  const rows = projects.map((p) =>
    h(
      "tr",
      { class: "project-row" },
      h("td", null, h("a", { class: "project-link", href: link.project(p.name) }, p.name)),
      h("td", null, p.task),
      h("td", { class: "num" }, fmt(p.images)),
      h("td", { class: "num" }, fmt(p.annotations)),
      h("td", { class: "num" }, fmt(p.unlabeled_images)),
      h("td", null, p.classes.join(", ")),
      h("td", null, when(p.created_at)),
    ),
  );
  out.push(table(["project", "task", "images", "annotations", "unlabeled", "classes", "created"], rows, { id: "projects" }));
  return out;
}

// ------------------------------------------------------------------ one project

async function projectView(name, view) {
  crumbs(["projects", link.projects()], [name]);
  const base = projectPath(name);
  const project = await api(base); // 404 here is the page's error
  const isFork = Boolean(project.base);
  const skipped = Promise.resolve(null);
  const [versions, models, batches, schema, forks, fork, baseInfo] = await Promise.allSettled([
    api(`${base}/versions?limit=1000`),
    api(`${base}/models?limit=1000`),
    api(`${base}/queue/batches`),
    api(`${base}/classes`),
    api(`${base}/forks?limit=1000`),
    isFork ? api(`${base}/fork`) : skipped,
    isFork ? api(`${base}/base`) : skipped,
  ]);
  for (const r of [versions, models, batches, schema, forks, fork, baseInfo]) {
    if (r.status === "rejected" && r.reason instanceof ApiError && r.reason.status === 401) throw r.reason;
  }
  const versionList = versions.status === "fulfilled" ? versions.value.versions : [];
  const numbers = new Map(versionList.map((v) => [v.version, v.number]));
  return [
    h("h1", { id: "project-name" }, project.name),
    h("p", { class: "muted" }, `${project.task} project in workspace ${project.workspace}, created ${when(project.created_at)}`),
    isFork ? h("p", { id: "fork-of" }, "A customer project: a fork of ", h("strong", null, project.base), " (its images are inherited, not counted below).") : null,
    h(
      "div",
      { class: "stats" },
      stat("images", project.images, link.images(project.name)),
      stat("annotations", project.annotations),
      stat("unlabeled images", project.unlabeled_images, null),
      stat("classes", project.classes.length),
    ),
    h("p", null, h("a", { class: "button", id: "browse", href: link.images(project.name) }, `Browse the ${fmt(project.images)} images`)),
    isFork ? basePanel(project, fork, baseInfo) : null,
    customersPanel(project.name, forks, view),
    h("div", { class: "columns" }, classesPanel(project), splitsPanel(project)),
    migrationsPanel(schema),
    versionsPanel(versions),
    modelsPanel(models, numbers),
    queuePanel(batches),
    healthPanel(project.name),
  ];
}

function stat(label, value, target) {
  const number = h("span", { class: "stat-value" }, fmt(value));
  return h("div", { class: "stat" }, target ? h("a", { href: target }, number) : number, h("span", { class: "stat-label" }, label));
}

function classesPanel(project) {
  const counts = project.class_counts || {};
  const max = Math.max(0, ...Object.values(counts));
  const rows = project.classes.map((c) =>
    bar(c, counts[c] || 0, max, `${fmt(counts[c] || 0)} on ${fmt((project.class_images || {})[c] || 0)} images`, link.images(project.name, { class: c })),
  );
  return panel("Class balance", { id: "classes" }, rows.length ? rows : empty("No classes yet."));
}

function splitsPanel(project) {
  const splits = project.splits || {};
  const max = Math.max(0, ...Object.values(splits));
  const order = ["train", "valid", "test", "unassigned"];
  const names = Object.keys(splits).sort((a, b) => order.indexOf(a) - order.indexOf(b));
  const tags = Object.entries(project.tags || {});
  return panel(
    "Splits",
    { id: "splits" },
    names.length ? names.map((s) => bar(s, splits[s], max, `${fmt(splits[s])} images`, link.images(project.name, { split: s }))) : empty("No images yet."),
    h("h3", null, "Tags"),
    tags.length
      ? h("ul", { class: "chips" }, tags.map(([t, n]) => h("li", null, h("a", { class: "chip", href: link.images(project.name, { tag: t }) }, t, h("span", { class: "count" }, fmt(n))))))
      : empty("No tags."),
  );
}

// ------------------------------------------------------------------ customer projects (forks), the fleet, the schema

/** How a fork reads one base class (its class map's value: a name, null, or a split rule), in words. */
function mappedText(baseClass, value) {
  if (value === undefined || value === baseClass) return [h("span", { class: "mapped-name" }, baseClass), h("span", { class: "muted" }, " (same name)")];
  if (value === null) return h("span", { class: "mapped-dropped" }, "dropped: its inherited labels are left out");
  if (typeof value === "object") {
    const into = Array.isArray(value.into) ? value.into.join(", ") : fmt(value.into);
    return h("span", { class: "mapped-split" }, `split by the attribute ${fmt(value.by)} into ${into} (else ${fmt(value.default)})`);
  }
  return [h("span", { class: "mapped-name" }, String(value)), h("span", { class: "muted" }, " (renamed)")];
}

/** A customer project: the base version it is on, the class map, the adopted images, the inherited images. */
function basePanel(project, forkResult, baseResult) {
  if (forkResult.status === "rejected") return panel("Base", { id: "base" }, errorBox(forkResult.reason));
  const fork = forkResult.value;
  const info = baseResult.status === "fulfilled" ? baseResult.value : null;
  const splits = info ? (info.counts && info.counts.splits) || {} : {};
  const inherited = Object.entries(splits).reduce((n, [s, c]) => (s === "test" ? n : n + (c.images || 0)), 0);
  const baseTest = splits.test ? splits.test.images || 0 : 0;
  const baseClasses = info ? info.classes : [];
  const names = [...baseClasses, ...Object.keys(fork.class_map || {}).filter((k) => !baseClasses.includes(k))];
  const rows = names.map((c) =>
    h("tr", { class: "class-map-row" }, h("td", { class: "base-class" }, c), h("td", { class: "mapped" }, mappedText(c, (fork.class_map || {})[c]))),
  );
  const latest = fork.latest_base_version_number;
  return panel(
    "Base",
    { id: "base" },
    h(
      "p",
      { id: "base-version" },
      "On ",
      h("strong", { id: "base-ref" }, `${fork.base_workspace}/${fork.base_project}@v${fork.base_version_number}`),
      " ",
      fork.behind ? h("span", { class: "badge warning", id: "base-behind" }, `behind: v${latest} available`) : h("span", { class: "badge ok" }, "up to date"),
      h("span", { class: "muted" }, fork.rebased_at ? ` · rebased ${when(fork.rebased_at)}` : ` · forked ${when(fork.created_at)}`),
    ),
    fork.behind ? h("p", { class: "muted" }, `winnow project rebase ${project.name} moves it to v${latest}, with a report of what changed and of any conflicts.`) : null,
    info
      ? h(
          "p",
          { id: "base-counts" },
          `${fmt(inherited)} inherited images (the base version's train and valid splits; its ${fmt(baseTest)} test images stay the base's) · `,
          h("span", { id: "base-adopted" }, `${fmt(fork.adopted)} adopted`),
          h("span", { class: "muted" }, " (own copies that stand in for inherited images)"),
        )
      : errorBox(baseResult.reason),
    h("h3", null, "Class map"),
    rows.length ? table(["base class", "in this project"], rows, { id: "class-map" }) : empty("The base version has no classes."),
    h("p", null, h("a", { class: "button", id: "browse-base", href: link.base(project.name) }, info ? `Browse the ${fmt(inherited)} inherited images` : "Browse the inherited images")),
  );
}

const VERDICT_BADGE = { customised: "ok", "base is enough": "info", "no model": "warning", "no base model": "warning", "no test set": "warning", error: "failed" };

function signed(value) {
  if (value === null || value === undefined) return "–";
  return (value > 0 ? "+" : "") + value.toFixed(3);
}

function sliceText(s) {
  if (!s) return "–";
  return `${s.name} ${fmt(s.score)} (${fmt(s.images)} images)`;
}

function labelsText(labels) {
  if (!labels) return "–";
  const share = labels.share === null || labels.share === undefined ? "–" : `${(100 * labels.share).toFixed(labels.share < 0.1 ? 1 : 0)}%`;
  return [share, h("div", { class: "muted small" }, `${fmt(labels.own_train_images)} own / ${fmt(labels.base_train_images)} base train images`)];
}

/** One customer: a row of the fleet (fields in docs/fleet.md); a /forks entry has no scores yet (undefined: "–"). */
function customerRow(c) {
  const bv = c.base_version || {};
  const model = c.model === undefined ? "–" : c.model === null ? h("span", { class: "muted" }, "no model") : [c.model.name, c.model.source === "deployed" ? h("span", { class: "badge ok" }, "deployed") : null];
  return h(
    "tr",
    { class: "customer-row" },
    h("td", null, h("span", { class: "customer-name" }, `${c.workspace}/${c.project}`), c.test_images === undefined ? null : h("div", { class: "muted small" }, `${fmt(c.test_images)} test images`)),
    h("td", { class: "customer-base" }, `v${fmt(bv.number)}`, bv.behind ? " " : null, bv.behind ? h("span", { class: "badge warning" }, `behind: v${fmt(bv.latest)} available`) : null),
    h("td", { class: "customer-model" }, model),
    h("td", { class: "num base-score" }, fmt(c.base_score)),
    h("td", { class: "num customer-score" }, fmt(c.score)),
    h("td", { class: "num delta" }, signed(c.delta)),
    h("td", { class: "worst-slice" }, sliceText(c.worst_slice)),
    h(
      "td",
      { class: "verdict" },
      c.verdict ? h("span", { class: `badge ${VERDICT_BADGE[c.verdict] || ""}` }, c.verdict) : "–",
      c.error ? h("div", { class: "error small" }, c.error) : null,
    ),
    h("td", { class: "labels-share" }, labelsText(c.labels)),
  );
}

function customersTable(customers) {
  return table(
    ["customer", "base version", "model", "base score", "customer score", "delta", "worst slice", "verdict", "labels share"],
    customers.map(customerRow),
    { id: "customers-table" },
  );
}

function fleetSummary(fleet) {
  const m = fleet.base.model;
  const metric = (fleet.customers.find((c) => c.metric) || {}).metric;
  const e = fleet.evaluations || {};
  return h(
    "p",
    { class: "muted", id: "fleet-summary" },
    `Base model: ${m ? `${m.name} (${m.source})` : "none (this project has no ready model)"} · scores: ${metric || "mAP50 or accuracy"} on each customer's own ${fleet.split} split · ` +
      `customised when the customer's model beats the base model by 0.01 or more · ${fmt(e.run || 0)} evaluations run, ${fmt(e.cached || 0)} cached, ${fmt(e.seconds, 2)} s`,
  );
}

// A base project: its customers. The fleet (GET .../fleet) evaluates models, so it is asked for
// only when /forks lists a customer, after the page is shown; until it answers (or when it
// fails) the rows come from /forks.
function customersPanel(project, result, view) {
  if (result.status === "rejected") return panel("Customers", { id: "customers" }, errorBox(result.reason));
  const forks = result.value.forks;
  if (!forks.length) return null;
  const body = h("div", { id: "customers-body" }, customersTable(forks.map((f) => ({
    workspace: f.workspace,
    project: f.project,
    base_version: { number: f.base_version_number, latest: f.latest_base_version_number, behind: f.behind },
  }))));
  const status = h("p", { class: "muted loading", id: "fleet-status" }, "loading the fleet: each customer's model and the base model on the customer's test set…");
  api(`${projectPath(project)}/fleet`)
    .then((fleet) => {
      if (view !== state.view) return;
      body.replaceChildren(customersTable(fleet.customers), fleetSummary(fleet));
      status.remove();
    })
    .catch((err) => {
      if (view !== state.view) return;
      if (err instanceof ApiError && err.status === 401) return signOut(err.message);
      status.className = "error";
      status.textContent = `The fleet view failed (${err.message}); the customers are listed without their models and scores.`;
    });
  return panel("Customers", { id: "customers" }, h("p", { class: "muted" }, `${fmt(forks.length)} customer project(s) forked from ${project}.`), status, body);
}

/** A class migration (docs/forks.md, "Class schema migrations") in words. */
function migrationText(m) {
  const p = m.params || {};
  const list = (xs) => (Array.isArray(xs) ? xs.join(", ") : fmt(xs));
  switch (m.op) {
    case "add":
      return `added ${p.name}`;
    case "rename":
      return `renamed ${p.old} → ${p.new}`;
    case "merge":
      return `merged ${list(p.sources)} into ${p.into}`;
    case "split":
      return `split ${p.source} into ${list(p.into)}` + (p.by ? ` by the attribute ${p.by}` : "") + (p.default ? ` (else ${p.default})` : "");
    case "drop":
      return `dropped the base class ${p.base_class}`;
    default:
      return `${m.op} ${JSON.stringify(p)}`;
  }
}

function migrationsPanel(result) {
  if (result.status === "rejected") return panel("Class migrations", { id: "migrations" }, errorBox(result.reason));
  const migrations = result.value.migrations || [];
  if (!migrations.length) return null;
  return panel(
    "Class migrations",
    { id: "migrations" },
    h(
      "ol",
      { class: "migrations" },
      migrations.map((m) =>
        h(
          "li",
          { class: "migration" },
          h("span", { class: "migration-seq" }, `#${m.seq}`),
          " ",
          h("span", { class: "migration-text" }, migrationText(m)),
          h("span", { class: "muted" }, ` · ${fmt(m.annotations)} annotation(s) changed · ${when(m.created_at)}` + (m.created_by ? ` by ${m.created_by}` : "")),
        ),
      ),
    ),
  );
}

function versionsPanel(result) {
  if (result.status === "rejected") return panel("Versions", { id: "versions" }, errorBox(result.reason));
  const versions = result.value.versions;
  if (!versions.length) return panel("Versions", { id: "versions" }, empty("No versions yet: winnow version create PROJECT."));
  const rows = versions
    .slice()
    .reverse()
    .map((v) => {
      const splits = Object.entries(v.counts.splits || {}).map(([s, c]) => `${s} ${fmt(c.images)}`).join(", ");
      return h(
        "tr",
        { class: "version-row" },
        h("td", { class: "version-number" }, `v${v.number}`),
        h("td", null, v.name || ""),
        h("td", null, h("code", { title: v.version }, v.version.slice(0, 12))),
        h("td", { class: "num" }, fmt(v.counts.images)),
        h("td", { class: "num" }, fmt(v.counts.annotations)),
        h("td", null, splits),
        h("td", null, when(v.created_at)),
      );
    });
  return panel("Versions", { id: "versions" }, table(["version", "name", "id", "images", "annotations", "splits", "created"], rows));
}

/** A model's headline numbers: the evaluated split's metrics (e.g. valid map50), else top-level numbers. */
function metricsText(metrics) {
  if (!metrics || typeof metrics !== "object") return "";
  const split = typeof metrics.split === "string" ? metrics.split : null;
  const block = split && metrics[split] && typeof metrics[split] === "object" ? metrics[split] : metrics;
  const skip = new Set(["images", "annotations", "predictions", "epochs_run", "train_images", "valid_images"]);
  const parts = Object.entries(block)
    .filter(([k, v]) => typeof v === "number" && !skip.has(k))
    .map(([k, v]) => `${k} ${fmt(v)}`);
  if (!parts.length) return "";
  return (split && block !== metrics ? `${split}: ` : "") + parts.join(" · ") + (typeof block.images === "number" ? ` (${block.images} images)` : "");
}

function modelsPanel(result, numbers) {
  if (result.status === "rejected") return panel("Models", { id: "models" }, errorBox(result.reason));
  const models = result.value.models;
  if (!models.length) return panel("Models", { id: "models" }, empty("No models yet: winnow train PROJECT@latest."));
  const rows = models
    .slice()
    .reverse()
    .map((m) =>
      h(
        "tr",
        { class: "model-row" },
        h("td", { class: "model-name" }, m.name, m.deployed ? h("span", { class: "badge ok" }, "deployed") : null),
        h("td", null, h("span", { class: `badge ${m.status}` }, m.status)),
        h("td", null, m.backend),
        h("td", null, numbers.has(m.version) ? `v${numbers.get(m.version)}` : h("code", null, m.version.slice(0, 12))),
        h("td", { class: "metrics" }, m.status === "failed" && m.metrics && m.metrics.error ? h("span", { class: "error" }, m.metrics.error) : metricsText(m.metrics)),
        h("td", null, when(m.created_at)),
      ),
    );
  return panel("Models", { id: "models" }, table(["model", "status", "backend", "version", "metrics", "created"], rows));
}

function queuePanel(result) {
  if (result.status === "rejected") return panel("Labeling queue", { id: "queue" }, errorBox(result.reason));
  const batches = result.value.batches;
  if (!batches.length) return panel("Labeling queue", { id: "queue" }, empty("No batches: winnow select PROJECT --budget N makes one."));
  const rows = batches
    .slice()
    .reverse()
    .map((b) =>
      h(
        "tr",
        { class: "batch-row" },
        h("td", { class: "batch-name" }, b.name),
        h("td", null, b.kind),
        h("td", null, h("span", { class: `badge ${b.state}` }, b.state.replace("_", " "))),
        h("td", { class: "num" }, fmt(b.items)),
        h("td", { class: "num" }, fmt(b.counts.to_label || 0)),
        h("td", { class: "num" }, fmt(b.counts.in_review || 0)),
        h("td", { class: "num" }, fmt(b.counts.done || 0)),
        h("td", null, b.assignee || "–"),
        h("td", null, when(b.created_at)),
      ),
    );
  return panel(
    "Labeling queue",
    { id: "queue" },
    table(["batch", "kind", "state", "items", "to label", "in review", "done", "assignee", "created"], rows),
    h("p", { class: "muted" }, "Labeling and review happen with winnow queue for now; the browser gets them with the next web issue."),
  );
}

// Health: the API keeps no stored report, so the checks run on request (POST .../checks needs
// only `read` and changes no data) and the answer is kept for this tab.
function healthPanel(project) {
  const body = h("div", { id: "findings-body" });
  const button = h("button", { type: "button", id: "run-checks" }, "Run health checks");
  const show = (report) => body.replaceChildren(...findingsList(project, report));
  button.addEventListener("click", async () => {
    button.disabled = true;
    body.replaceChildren(h("p", { class: "muted loading" }, "running every check…"));
    try {
      const report = await api(`${projectPath(project)}/checks`, { method: "POST", body: {} });
      state.findings.set(project, report);
      show(report);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return signOut(err.message);
      body.replaceChildren(errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  if (state.findings.has(project)) show(state.findings.get(project));
  else body.append(empty("Run the data-health checks (duplicates, leaks, bad boxes, label errors, …) to see what they find, worst first."));
  return panel("Health findings", { id: "health" }, h("p", null, button), body);
}

function findingsList(project, report) {
  const s = report.summary;
  const sev = s.by_severity || {};
  const out = [
    h(
      "p",
      { class: "summary", id: "findings-summary" },
      `${fmt(s.findings)} findings on ${fmt(s.images_with_findings)} of ${fmt(s.images)} images ` +
        `(${fmt(sev.error || 0)} errors, ${fmt(sev.warning || 0)} warnings, ${fmt(sev.info || 0)} info) from ${s.checks_run.length} checks in ${fmt(s.seconds, 1)} s`,
    ),
  ];
  // what checks skipped or folded, and why (a labelling backlog, capped outliers, no model yet)
  const notes = s.notes || [];
  if (notes.length) {
    out.push(h("ul", { class: "notes", id: "findings-notes" }, notes.map((n) => h("li", null, h("code", null, n.check), ": ", n.message))));
  }
  if (!report.findings.length) return out.concat(empty("Nothing found."));
  const byCheck = Object.entries(s.by_check || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  out.push(h("ul", { class: "chips", id: "findings-by-check" }, byCheck.map(([c, n]) => h("li", { class: "chip" }, c, h("span", { class: "count" }, fmt(n))))));
  const items = report.findings.slice(0, MAX_FINDINGS).map((f, i) => {
    const shown = f.images.slice(0, 6);
    return h(
      "li",
      { class: `finding sev-${f.severity}`, hidden: i >= FIRST_FINDINGS },
      h("span", { class: `badge ${f.severity}` }, f.severity),
      " ",
      h("strong", { class: "finding-check" }, f.check),
      ": ",
      h("span", { class: "finding-message" }, f.message),
      shown.length
        ? h("div", { class: "finding-images" }, shown.map((n) => h("a", { href: link.image(project, n) }, n)), f.images.length > shown.length ? ` and ${f.images.length - shown.length} more` : null)
        : null,
      f.suggestion ? h("div", { class: "muted" }, `suggested: ${f.suggestion.text}`) : null,
    );
  });
  out.push(h("ol", { class: "findings", id: "findings" }, items));
  if (items.length > FIRST_FINDINGS) {
    const more = h("button", { type: "button", class: "secondary", id: "all-findings" }, `Show all ${fmt(items.length)}`);
    more.addEventListener("click", () => {
      for (const li of items) li.hidden = false;
      more.remove();
    });
    out.push(more);
  }
  if (report.findings.length > MAX_FINDINGS) out.push(empty(`and ${report.findings.length - MAX_FINDINGS} more (winnow check PROJECT --html report.html shows all)`));
  return out;
}

// ------------------------------------------------------------------ the image grid

async function gridView(name, query, view) {
  crumbs(["projects", link.projects()], [name, link.project(name)], ["images"]);
  const filters = { split: query.get("split") || "", tag: query.get("tag") || "", class: query.get("class") || "" };
  const offset = Math.max(0, parseInt(query.get("offset") || "0", 10) || 0);
  const base = projectPath(name);
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(offset), annotations: "true" });
  for (const [k, v] of Object.entries(filters)) if (v) params.set(k, v);
  const [project, page] = await Promise.all([api(base), api(`${base}/images?${params}`)]);

  const select = (label, key, values) =>
    h(
      "label",
      null,
      label,
      " ",
      h(
        "select",
        {
          id: `filter-${key}`,
          onchange: (e) => {
            location.hash = link.images(name, Object.assign({}, filters, { [key]: e.target.value }));
          },
        },
        h("option", { value: "" }, "any"),
        values.map((v) => h("option", { value: v, selected: v === filters[key] }, v)),
      ),
    );
  const filterForm = h(
    "form",
    { class: "filters", onsubmit: (e) => e.preventDefault() },
    select("split", "split", Object.keys(project.splits || {})),
    select("tag", "tag", Object.keys(project.tags || {})),
    select("class", "class", project.classes),
    filters.split || filters.tag || filters.class ? h("a", { href: link.images(name) }, "clear filters") : null,
  );

  const images = page.images;
  const first = images.length ? offset + 1 : 0;
  const pager = h(
    "div",
    { class: "pager" },
    offset > 0 ? h("a", { class: "button", id: "prev", href: link.images(name, Object.assign({}, filters, { offset: Math.max(0, offset - PAGE_SIZE) })) }, "← previous") : null,
    h("span", { id: "showing" }, images.length ? `images ${first}–${offset + images.length} of ${fmt(page.total)}` : "no images"),
    page.more ? h("a", { class: "button", id: "next", href: link.images(name, Object.assign({}, filters, { offset: offset + PAGE_SIZE })) }, "next →") : null,
  );

  const grid = h("div", { class: "grid", id: "grid" });
  const cells = images.map((img) => {
    const frame = imageFrame(img.width, img.height, "thumb");
    grid.append(
      gridCell(link.image(name, img.name), img.name, frame, [
        img.split ? h("span", { class: "chip small" }, img.split) : null,
        img.classes.map((c) => h("span", { class: "chip small class-chip" }, c)),
        img.annotations ? null : h("span", { class: "chip small muted" }, "unlabeled"),
      ]),
    );
    return { img, frame };
  });
  // the page lists each image's annotations (annotations=true); only the bytes are fetched per thumbnail
  eachLimited(cells, async ({ img, frame }) => {
    if (view !== state.view) return;
    try {
      const url = await imageUrl(name, img.name);
      if (view !== state.view) return;
      frame.show(url, img.annotation_list || [], false);
    } catch (err) {
      frame.fail(err);
    }
  });

  return [
    h("h1", null, `Images of ${project.name}`),
    filterForm,
    pager,
    images.length ? grid : empty("No image matches these filters."),
  ];
}

/** A thumbnail cell of a grid: a link to ``target`` (or, without one, not a link). */
function gridCell(target, name, frame, chips) {
  return h(
    target ? "a" : "div",
    { class: target ? "cell" : "cell readonly", href: target, title: name, "data-name": name },
    frame.root,
    h("span", { class: "cell-name" }, name),
    h("span", { class: "cell-meta" }, chips),
  );
}

// ------------------------------------------------------------------ a fork's inherited images (read-only)

async function baseGridView(name, query, view) {
  crumbs(["projects", link.projects()], [name, link.project(name)], ["inherited images"]);
  const offset = Math.max(0, parseInt(query.get("offset") || "0", 10) || 0);
  const base = projectPath(name);
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(offset) });
  const [project, page] = await Promise.all([api(base), api(`${base}/base/images?${params}`)]);

  const images = page.images;
  const pager = h(
    "div",
    { class: "pager" },
    offset > 0 ? h("a", { class: "button", id: "prev", href: link.base(name, { offset: Math.max(0, offset - PAGE_SIZE) }) }, "← previous") : null,
    h("span", { id: "showing" }, images.length ? `images ${offset + 1}–${offset + images.length} of ${fmt(page.total)}` : "no images"),
    page.more ? h("a", { class: "button", id: "next", href: link.base(name, { offset: offset + PAGE_SIZE }) }, "next →") : null,
  );
  const grid = h("div", { class: "grid", id: "grid" });
  const cells = images.map((img) => {
    const frame = imageFrame(img.width, img.height, "thumb");
    const labels = Object.keys(img.labels || {});
    grid.append(
      // an adopted image is the project's own copy (same name): its page can be opened
      gridCell(img.adopted ? link.image(name, img.name) : null, img.name, frame, [
        img.split ? h("span", { class: "chip small" }, img.split) : null,
        labels.map((c) => h("span", { class: "chip small class-chip" }, c)),
        labels.length ? null : h("span", { class: "chip small muted" }, "no labels"),
        img.adopted ? h("span", { class: "chip small adopted" }, "adopted") : null,
      ]),
    );
    return { img, frame };
  });
  eachLimited(cells, async ({ img, frame }) => {
    if (view !== state.view) return;
    try {
      const url = await blobUrl(`${baseImagePath(name, img.name)}/file`);
      if (view !== state.view) return;
      frame.show(url, img.annotations || [], false);
    } catch (err) {
      frame.fail(err);
    }
  });

  return [
    h("h1", null, `Inherited images of ${project.name}`),
    h(
      "p",
      { class: "muted", id: "base-grid-note" },
      `Read-only: the images of ${project.base || "the base"} that this project inherits (all but the base's test split), ` +
        `with their labels under this project's class names. To correct one, adopt it: winnow project adopt ${project.name} NAME.`,
    ),
    pager,
    images.length ? grid : empty("This fork inherits no images."),
  ];
}

/**
 * An image with an SVG overlay in the image's own pixel coordinates (viewBox 0 0 W H), scaled
 * exactly like the image (object-fit: contain = preserveAspectRatio xMidYMid meet).
 * Boxes are [x1, y1, x2, y2] absolute pixels; polygons flat [x0, y0, x1, y1, ...] parts.
 */
function imageFrame(width, height, kind) {
  const img = h("img", { alt: "", draggable: "false" });
  const overlay = svg("svg", {
    class: "boxes",
    viewBox: `0 0 ${width || 1} ${height || 1}`,
    preserveAspectRatio: "xMidYMid meet",
    "aria-hidden": "true",
  });
  const root = h("div", { class: `frame ${kind}` }, img, overlay);
  if (kind === "full" && width && height) root.style.aspectRatio = `${width} / ${height}`;
  return {
    root,
    show(url, annotations, labelled) {
      img.src = url;
      drawBoxes(overlay, annotations, width, height, labelled);
    },
    fail(err) {
      root.classList.add("failed");
      root.append(h("span", { class: "frame-error" }, err instanceof Error ? err.message : String(err)));
    },
  };
}

function drawBoxes(overlay, annotations, width, height, large) {
  // labels about 12 (thumbnail) or 14 (full) screen pixels high, in the image's pixel units
  const shown = overlay.getBoundingClientRect();
  const perPixel = shown.width > 0 && shown.height > 0 ? Math.max(width / shown.width, height / shown.height) : (Math.max(width, height) || 100) / 200;
  const font = (large ? 14 : 12) * perPixel;
  overlay.replaceChildren();
  for (const a of annotations) {
    const c = colour(a.label);
    const g = svg("g", { class: "annotation", "data-label": a.label, "data-id": a.id });
    for (const part of a.polygon || []) {
      const points = [];
      for (let i = 0; i + 1 < part.length; i += 2) points.push(`${part[i]},${part[i + 1]}`);
      g.append(svg("polygon", { class: "polygon", points: points.join(" "), fill: c, "fill-opacity": "0.25", stroke: c, "stroke-width": "1.5", "vector-effect": "non-scaling-stroke" }));
    }
    if (a.bbox) {
      const [x1, y1, x2, y2] = a.bbox;
      g.append(
        svg("rect", { class: "box", x: x1, y: y1, width: Math.max(0, x2 - x1), height: Math.max(0, y2 - y1), fill: "none", stroke: c, "stroke-width": "2", "vector-effect": "non-scaling-stroke" }),
        svg(
          "text",
          { class: "box-label", x: x1 + font * 0.15, y: Math.max(font, y1 - font * 0.2), fill: c, "font-size": font, stroke: "black", "stroke-width": font / 8, "paint-order": "stroke" },
          a.label + (a.score !== null && a.score !== undefined ? ` ${a.score.toFixed(2)}` : ""),
        ),
      );
    }
    overlay.append(g);
  }
}

// ------------------------------------------------------------------ one image

async function imageView(project, name, view) {
  crumbs(["projects", link.projects()], [project, link.project(project)], ["images", link.images(project)], [name]);
  const image = await api(imagePath(project, name));
  const frame = imageFrame(image.width, image.height, "full");
  imageUrl(project, name)
    .then((url) => view === state.view && frame.show(url, image.annotations, true))
    .catch((err) => frame.fail(err));

  const rows = image.annotations.map((a) =>
    h(
      "tr",
      { class: "annotation-row" },
      h("td", { class: "num" }, fmt(a.id)),
      h("td", null, h("span", { class: "swatch", "data-colour": colour(a.label) }), h("span", { class: "annotation-label" }, a.label)),
      h("td", null, a.bbox ? a.bbox.map((v) => v.toFixed(1)).join(", ") : "–"),
      h("td", null, a.polygon ? `${a.polygon.length} part(s)` : a.rle ? "mask" : "–"),
      h("td", null, a.source),
      h("td", { class: "num" }, a.score === null || a.score === undefined ? "–" : a.score.toFixed(3)),
      h("td", null, Object.keys(a.attributes || {}).length ? JSON.stringify(a.attributes) : ""),
    ),
  );
  for (const sw of rows.map((r) => r.querySelector(".swatch"))) sw.style.background = sw.getAttribute("data-colour");
  const metadata = Object.entries(image.metadata || {});
  return [
    h("h1", { id: "image-name" }, image.name),
    h(
      "p",
      { class: "muted" },
      `${image.width} × ${image.height} px · split ${image.split || "unassigned"} · ${image.annotations.length} annotation(s) · sha256 `,
      h("code", { title: image.sha256 }, image.sha256.slice(0, 16)),
    ),
    h(
      "div",
      { class: "image-page" },
      h("div", { class: "image-main" }, frame.root),
      h(
        "div",
        { class: "image-side" },
        panel("Tags", { id: "tags" }, image.tags.length ? h("ul", { class: "chips" }, image.tags.map((t) => h("li", null, h("a", { class: "chip", href: link.images(project, { tag: t }) }, t)))) : empty("No tags.")),
        panel(
          "Metadata",
          { id: "metadata" },
          metadata.length ? table(["key", "value"], metadata.map(([k, v]) => h("tr", null, h("td", null, k), h("td", null, fmt(v))))) : empty("No metadata."),
        ),
      ),
    ),
    panel(
      "Annotations",
      { id: "annotations" },
      rows.length ? table(["id", "label", "box (x1, y1, x2, y2 px)", "shape", "source", "score", "attributes"], rows) : empty("No annotations: this image is unlabeled."),
    ),
    h("p", { class: "muted" }, "Read-only for now: editing labels in the browser comes with the next web issue (winnow's API and CLI can edit them today)."),
  ];
}

// ------------------------------------------------------------------ start

async function showVersion() {
  try {
    const r = await fetch(`${API}/health`, { cache: "no-store" });
    if (r.ok) {
      const body = await r.json();
      const brand = document.querySelector(".brand");
      brand.title = `winnow ${body.version}`;
    }
  } catch {
    // the version is a nicety
  }
}

function start() {
  takeKeyFromFragment();
  state.key = sessionStorage.getItem(KEY_ITEM);
  $("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = $("signin-key").value.trim();
    if (!key) return;
    $("signin-key").value = "";
    $("signin-error").hidden = true;
    $("signin-error").textContent = "";
    if (await signIn(key)) render();
  });
  $("sign-out").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", () => {
    if (/^#key=/.test(location.hash)) {
      takeKeyFromFragment();
      state.key = sessionStorage.getItem(KEY_ITEM);
      state.who = null;
    }
    render();
  });
  showVersion();
  render();
}

start();
