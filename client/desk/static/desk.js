// sealdrop desk: the page. Plain JavaScript, no library, no build step, no
// inline code (the CSP forbids it). Everything a sender wrote (notes, labels,
// file names, patient names) reaches the document as text nodes only
// (`el` below never parses markup), so it cannot become code or markup.
import { showMesh } from "/static/mesh.js";

let csrf = null;
let me = null;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
const $ = (id) => document.getElementById(id);

function size(n) {
  if (n === null || n === undefined) return "";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let i = 0; let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return i === 0 ? `${n} bytes` : `${v.toFixed(1)} ${units[i]}`;
}
function when(ts) { return ts ? new Date(ts * 1000).toLocaleString() : ""; }
function isoDate(d) { return /^\d{8}$/.test(d || "") ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}` : d; }
function digits(n) { return el("span", { class: "digits" }, n); }

async function api(method, path, body) {
  const headers = {};
  let payload;
  if (method !== "GET") headers["X-Sealdrop-CSRF"] = csrf || "";
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const res = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  const type = res.headers.get("Content-Type") || "";
  const data = type.startsWith("application/json") ? await res.json() : null;
  if (!res.ok) {
    const err = (data && data.error) || { message: `the desk answered HTTP ${res.status}` };
    err.status = res.status;
    throw err;
  }
  return data;
}

function say(box, err) {
  if (!err) { box.replaceChildren(); return; }
  box.replaceChildren(el("p", { class: "error", role: "alert" }, err.message || String(err)));
  if (err.hint) box.append(el("p", { class: "hint" }, err.hint));
}
function good(box, text) { box.replaceChildren(el("p", { class: "ok" }, text)); }

// -- screens --------------------------------------------------------------------
const screens = ["send", "inbox", "contacts", "status", "settings"];
const loaders = {};

function show(name, focus = true) {
  for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== `screen-${name}`;
  for (const b of document.querySelectorAll("#tabs button")) {
    if (b.dataset.screen === name) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  if (loaders[name]) loaders[name]();
  if (focus) $("main").focus();
}

async function start() {
  for (const b of document.querySelectorAll("#tabs button")) {
    b.addEventListener("click", () => show(b.dataset.screen));
  }
  let session;
  try {
    session = await api("GET", "/api/session");
  } catch (err) {
    $("refused-why").textContent = err.message;
    show("refused", false);
    return;
  }
  csrf = session.csrf;
  if (session.unlocked) return unlocked(session);
  $("who").textContent = `${session.handle} on ${session.relay}`;
  show("lock", false);
  $("passphrase").focus();
}

$("unlock-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const box = $("unlock-msg");
  box.replaceChildren(el("p", {}, "Unlocking…"));
  try {
    const session = await api("POST", "/api/unlock", { passphrase: $("passphrase").value });
    $("passphrase").value = "";
    box.replaceChildren();
    unlocked(session);
  } catch (err) { say(box, err); }
});

function unlocked(session) {
  me = session;
  $("who").textContent = `${session.handle} on ${session.relay}`;
  $("tabs").hidden = false;
  show("inbox", false);
  document.querySelector('#tabs button[data-screen="inbox"]').focus();
}

// -- send -------------------------------------------------------------------------
let staged = null;

$("file-input").addEventListener("change", (ev) => {
  dropList([...ev.target.files].map((f) => [f.name, f]));
  ev.target.value = "";  // the same files chosen again are a new drop
});
$("folder-input").addEventListener("change", (ev) => {
  dropList([...ev.target.files].map((f) => [f.webkitRelativePath || f.name, f]));
  ev.target.value = "";
});

const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  const entries = [...ev.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  const files = [];
  for (const e of entries) await walk(e, files);
  // No entries (another program's drag, an older browser): the plain files, flat.
  if (!entries.length) for (const f of ev.dataTransfer.files) files.push([f.name, f]);
  dropList(files);
});

async function walk(entry, out) {
  if (entry.isFile) {
    const file = await new Promise((ok, bad) => entry.file(ok, bad));
    out.push([entry.fullPath.replace(/^\/+/, ""), file]);
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((ok, bad) => reader.readEntries(ok, bad));
      if (!batch.length) break;
      for (const e of batch) await walk(e, out);
    }
  }
}

function dropList(files) {
  const box = $("drop-msg");
  if (!files.length) return;
  $("send-form").hidden = true;  // the form is for the files being dropped, once they are in
  const form = new FormData();
  for (const [path, file] of files) form.append("file", file, path);
  const xhr = new XMLHttpRequest();
  const bar = el("progress", { max: 100, value: 0, "aria-label": "Preparing the files" });
  box.replaceChildren(el("p", {}, `Preparing ${files.length} file(s)…`), bar);
  xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; });
  xhr.addEventListener("load", () => {
    let data = null;
    try { data = JSON.parse(xhr.responseText); } catch { data = null; }
    if (xhr.status !== 200) { say(box, (data && data.error) || { message: `HTTP ${xhr.status}` }); return; }
    box.replaceChildren();
    staged = data;
    showStaged();
  });
  xhr.addEventListener("error", () => say(box, { message: "the desk stopped answering; is it still running?" }));
  xhr.open("POST", "/api/send/files");
  xhr.setRequestHeader("X-Sealdrop-CSRF", csrf);
  xhr.send(form);
}

async function showStaged() {
  $("send-files").textContent = `${staged.files.length} file(s), ${size(staged.size)}` +
    (staged.dicom_files ? `, of which ${staged.dicom_files} DICOM` : "");
  $("send-dicom").replaceChildren(...staged.dicom.map((line) => el("li", {}, line)));
  $("deid-box").hidden = !staged.dicom_files;
  $("deidentify").checked = false;
  const { contacts } = await api("GET", "/api/contacts");
  const to = $("send-to");
  if (!contacts.length) to.replaceChildren(el("p", {}, "No contacts yet: add one in Contacts."));
  else to.replaceChildren(...contacts.map((c) => {
    const id = `to-${c.handle}`;
    const ok = c.state === "verified";
    return el("div", {},
      el("input", { type: "checkbox", id, value: c.handle, disabled: !ok }),
      el("label", { for: id }, c.handle, el("span", { class: `badge ${c.state}` }, ok ? "verified" : "not verified yet: compare safety numbers in Contacts")));
  }));
  $("send-note").value = "";
  $("send-label").value = "";
  $("send-form").hidden = false;
  const first = to.querySelector("input:not([disabled])");
  (first || $("send-button")).focus();
}

$("send-discard").addEventListener("click", async () => {
  if (staged) await api("DELETE", `/api/send/files/${staged.stage}`).catch(() => null);
  staged = null;
  $("send-form").hidden = true;
  $("file-input").focus();
});

$("send-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const to = [...$("send-to").querySelectorAll("input:checked")].map((i) => i.value);
  const box = $("drop-msg");
  if (!to.length) { say(box, { message: "pick at least one contact to send to" }); return; }
  const request = { stage: staged.stage, to, note: $("send-note").value, label: $("send-label").value,
    expires: $("send-expires").value, deidentify: $("deidentify").checked };
  try {
    const { job } = await api("POST", "/api/send", request);
    $("send-form").hidden = true;
    box.replaceChildren();
    follow(job, $("send-jobs"), request);
  } catch (err) { say(box, err); }
});

function follow(job, where, request) {
  const line = el("div", { class: "card", "data-job": job.id });
  where.prepend(line);
  const tick = async () => {
    let j;
    try { j = (await api("GET", "/api/jobs")).jobs.find((x) => x.id === job.id); } catch { j = null; }
    if (!j) { setTimeout(tick, 1000); return; }
    renderJob(line, j, request);
    if (j.state === "running") setTimeout(tick, 400);
    else if (j.kind === "receive") loadInbox();
  };
  tick();
}

function renderJob(line, j, request) {
  const what = j.kind === "send" ? `Sending to ${(request && request.to.join(", ")) || ""}` : `Receiving transfer ${j.subject}`;
  const parts = [el("h3", {}, what)];
  if (j.state === "running") {
    parts.push(el("progress", { max: j.size || 1, value: j.done, "aria-label": what }),
      el("p", { class: "facts" }, j.size ? `${size(j.done)} of ${size(j.size)}` : "starting…"));
    if (j.retry) parts.push(el("p", { class: "hint" }, `Retrying: ${j.retry}. Nothing is lost.`));
  } else if (j.state === "done") {
    if (j.kind === "send") parts.push(el("p", { class: "ok" }, `Sent, encrypted, to ${j.result.recipients.join(", ")}.`),
      el("p", { class: "facts" }, `Transfer id ${j.result.transfer_id} · ${size(j.result.size)}`));
    else {
      parts.push(el("p", { class: "ok" }, `Received and verified from ${j.result.sender}: ${j.result.files} file(s) in ${j.result.folder}`));
      for (const f of j.result.forwards || []) {
        parts.push(f.state === "forwarded"
          ? el("p", { class: "ok" }, `Stored in the PACS ${f.target}: ${f.stored} of ${f.total} images.`)
          : el("p", { class: "error", role: "alert" }, `Not yet in the PACS ${f.target}: ${f.stored} of ${f.total} images stored${f.error ? ` (${f.error})` : ""}. It is tried again by itself while the desk receives automatically, or with: sealdrop forward ${f.transfer_id}`));
      }
    }
  } else {
    const err = j.error || { message: "failed" };
    const lead = j.kind !== "receive" ? "" : err.kind === "Refused" ? "Refused: " : "Not received: ";
    parts.push(el("p", { class: "error", role: "alert" }, lead + err.message));
    if (err.hint) parts.push(el("p", { class: "hint" }, err.hint));
    if (j.kind === "send" && request) {
      parts.push(el("div", { class: "actions" },
        el("button", { type: "button", onclick: async () => {
          try { const r = await api("POST", "/api/send", request); line.remove(); follow(r.job, $("send-jobs"), request); }
          catch (err2) { say(line, err2); }
        } }, "Try again (resumes)"),
        el("button", { type: "button", onclick: async () => {
          await api("DELETE", `/api/send/files/${request.stage}`).catch(() => null); line.remove();
        } }, "Discard")));
    }
  }
  line.replaceChildren(...parts);
}

// -- inbox ------------------------------------------------------------------------
loaders.inbox = loadInbox;
$("inbox-refresh").addEventListener("click", loadInbox);

let inboxSeq = 0;

async function loadInbox() {
  const box = $("inbox-msg");
  const list = $("inbox-list");
  const seq = ++inboxSeq;  // only the newest answer is shown
  box.replaceChildren(el("p", {}, "Asking the relay…"));
  let data;
  try { data = await api("GET", "/api/inbox"); } catch (err) { if (seq === inboxSeq) say(box, err); return; }
  if (seq !== inboxSeq) return;
  box.replaceChildren();
  if (!data.items.length) box.append(el("p", {}, "Nothing waiting."));
  if (data.truncated) box.append(el("p", { class: "hint" }, "More cases are waiting than shown: receive these first."));
  list.replaceChildren(...data.items.map(caseCard));
}

const BADGE = { verified: "verified sender", unverified: "sender not verified", unknown: "unknown sender" };

function caseCard(t) {
  const card = t.card || {};
  const studies = card.studies || [];
  const title = card.label || (studies[0] && studies[0].patient_name) || `Case ${t.id.slice(0, 8)}`;
  const facts = [];
  for (const s of studies) {
    facts.push([(s.modalities || []).join("/") || "DICOM", `${s.image_count} ${s.image_count === 1 ? "image" : "images"}`, s.patient_name, isoDate(s.study_date)].filter(Boolean).join(" · "));
  }
  const sentBy = el("p", {}, "From ", el("strong", {}, t.sender || "?"),
    el("span", { class: `badge ${t.sender_state}` }, BADGE[t.sender_state] || t.sender_state));
  const out = el("article", { class: `card ${t.state}`, "aria-label": `Case ${title}` },
    el("h3", {}, title), sentBy,
    ...facts.map((f) => el("p", { class: "facts" }, f)),
    card.note_line ? el("p", {}, "Note: ", card.note_line) : null,
    el("p", { class: "facts" }, [size(t.size), `sent ${when(t.sent_at)}`, card.file_count ? `${card.file_count} files` : null].filter(Boolean).join(" · ")),
    card.state === "invalid" ? el("p", { class: "alert", role: "alert" }, `This case's card does not verify: ${card.problem || ""}`) : null);
  if (t.state === "refused") {
    out.append(el("p", { class: "error", role: "alert" }, `Refused: ${t.refused || "it did not verify"}`));
  } else if (t.state === "received") {
    out.append(el("p", { class: "ok" }, "Received and verified."));
    if (t.preview) out.append(el("button", { type: "button", onclick: (ev) => preview(t, out, ev.target) }, "Show preview"));
  } else {
    out.append(el("div", { class: "actions" }, el("button", { type: "button", class: "primary", onclick: async (ev) => {
      ev.target.disabled = true;
      try { const { job } = await api("POST", `/api/inbox/${t.id}/receive`); follow(job, $("inbox-jobs"), null); }
      catch (err) { ev.target.disabled = false; say($("inbox-msg"), err); }
    } }, "Receive")));
  }
  return out;
}

async function preview(t, card, button) {
  button.disabled = true;
  let data;
  try { data = await api("GET", `/api/received/${t.id}/preview`); } catch (err) { say($("inbox-msg"), err); return; }
  const thumbs = el("div", { class: "thumbs" });
  for (const s of data.series) {
    if (!s.series_uid) { thumbs.append(el("p", { class: "hint" }, s.problem)); continue; }
    const caption = [s.modality, s.description, `${s.images} images`].filter(Boolean).join(" · ");
    thumbs.append(el("figure", {},
      s.image ? el("img", { src: s.image, alt: `Middle slice of the series ${caption}` }) : el("p", {}, `No preview: ${s.problem}`),
      el("figcaption", {}, caption)));
  }
  card.append(el("h4", {}, `In ${data.folder}`), thumbs);
  for (const m of data.meshes) {
    const canvas = el("canvas", { class: "mesh", width: 360, height: 280, tabindex: 0,
      "aria-label": `3D preview of ${m.path}: drag or use the arrow keys to turn it` });
    const holder = el("div", {}, el("p", {}, `${m.path} (${size(m.size)})`));
    holder.append(el("button", { type: "button", onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        const res = await fetch(`/api/received/${t.id}/mesh?path=${encodeURIComponent(m.path)}`, { credentials: "same-origin" });
        if (!res.ok) throw (await res.json()).error;
        holder.append(canvas);
        showMesh(canvas, await res.arrayBuffer());
        canvas.focus();
      } catch (err) { holder.append(el("p", { class: "error" }, `No preview: ${err.message}`)); }
    } }, "Show in 3D"));
    card.append(holder);
  }
}

// -- contacts ---------------------------------------------------------------------
loaders.contacts = loadContacts;

async function loadContacts() {
  const box = $("contacts-msg");
  $("me").replaceChildren(el("h3", {}, "Your safety number"),
    el("p", {}, digits(me.safety_number || "")),
    el("img", { class: "qr", src: "/api/me/qr.svg", alt: `QR code of your safety number, ${me.safety_number}` }),
    el("p", { class: "hint" }, "Read it to a new contact on the phone; they compare it with what their desk shows for you."));
  let data;
  try { data = await api("GET", "/api/contacts"); } catch (err) { say(box, err); return; }
  $("contacts-list").replaceChildren(...data.contacts.map(contactItem));
}

function contactItem(c) {
  const li = el("li", { class: "card" },
    el("h3", {}, c.handle, el("span", { class: `badge ${c.state}` }, c.state === "verified" ? "verified" : "not verified")),
    el("p", {}, "Safety number: ", digits(c.safety_number)));
  if (c.state !== "verified") {
    const id = `verify-${c.handle}`;
    const form = el("form", {},
      el("img", { class: "qr", src: `/api/contacts/${encodeURIComponent(c.handle)}/qr.svg`, alt: `QR code of ${c.handle}'s safety number` }),
      el("p", { class: "hint" }, `Call ${c.handle} on a number you already know. They read their safety number; type it here.`),
      el("label", { for: id }, `Safety number ${c.handle} reads to you`),
      el("input", { id, type: "text", inputmode: "numeric", autocomplete: "off", required: true }),
      el("button", { type: "submit" }, "Mark verified"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api("POST", `/api/contacts/${encodeURIComponent(c.handle)}/verify`, { safety_number: $(id).value });
        good($("contacts-msg"), `${c.handle} is verified.`);
        loadContacts();
      } catch (err) { say($("contacts-msg"), err); }
    });
    li.append(form);
  }
  return li;
}

$("add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const box = $("contacts-msg");
  try {
    const c = await api("POST", "/api/contacts", { handle: $("add-handle").value.trim() });
    $("add-handle").value = "";
    good(box, `${c.handle} added. Compare safety numbers with them before sending.`);
    loadContacts();
  } catch (err) {
    if (err.kind === "ContactKeyChangedError") {
      box.replaceChildren(el("div", { class: "alert", role: "alert" },
        el("p", { class: "error" }, `Key changed: ${err.message}`), err.hint ? el("p", {}, err.hint) : null));
    } else say(box, err);
  }
});

// -- status -----------------------------------------------------------------------
loaders.status = loadStatus;
$("status-refresh").addEventListener("click", loadStatus);

function mark(yes, word) { return yes ? `${word} ✓` : `not ${word}`; }

async function loadStatus() {
  const box = $("status-msg");
  box.replaceChildren(el("p", {}, "Asking the relay…"));
  let data;
  try { data = await api("GET", "/api/sent"); } catch (err) { say(box, err); return; }
  box.replaceChildren();
  if (!data.transfers.length) box.append(el("p", {}, "Nothing sent yet."));
  $("status-list").replaceChildren(...data.transfers.map((t) => {
    const rows = (t.recipients || []).map((r) => {
      const signed = r.receipts ? ` (${r.receipts.verified === "signed" ? "signed receipt" : r.receipts.verified || r.receipts.downloaded || "relay's word"})` : "";
      return el("tr", {}, el("td", {}, r.handle), el("td", {}, mark(r.uploaded, "uploaded")),
        el("td", {}, mark(r.downloaded, "opened")), el("td", {}, mark(r.verified, "verified") + (r.verified ? signed : "")),
        el("td", {}, r.dismissed ? "refused by them" : ""));
    });
    const card = el("article", { class: "card", "aria-label": `Sent case ${t.label || t.id}` },
      el("h3", {}, t.label || `Transfer ${t.id}`),
      el("p", { class: "facts" }, [t.state, t.file_count ? `${t.file_count} files` : null, size(t.size), when(t.created_at)].filter(Boolean).join(" · ")),
      rows.length ? el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Recipient"), el("th", {}, "Uploaded"),
        el("th", {}, "Opened"), el("th", {}, "Verified"), el("th", {}, ""))), el("tbody", {}, rows)) : null);
    const open = (t.recipients || []).some((r) => !r.downloaded);
    if (t.state === "sent" && open && !t.retracted_at) {
      const b = el("button", { type: "button", class: "danger" }, "Retract…");
      b.addEventListener("click", async () => {
        if (b.dataset.armed !== "1") { b.dataset.armed = "1"; b.textContent = "Really retract? Click again"; return; }
        try { await api("POST", `/api/sent/${t.id}/retract`); await loadStatus(); good(box, "Retracted: the relay deleted it."); }
        catch (err) { say(box, err); }
      });
      card.append(el("div", { class: "actions" }, b));
    }
    if (t.retracted_at) card.append(el("p", { class: "hint" }, `Retracted ${when(t.retracted_at)}`));
    return card;
  }));
}

$("audit-run").addEventListener("click", async () => {
  const box = $("audit-msg");
  box.replaceChildren(el("p", {}, "Checking everything against the relay's signed log…"));
  try {
    const { ok, report } = await api("GET", "/api/audit");
    if (ok) good(box, `Everything verified against the relay's log (checkpoint of ${report.checkpoint ? report.checkpoint.size : "?"} entries).`);
    else box.replaceChildren(el("div", { class: "alert", role: "alert" }, el("p", { class: "error" }, "Something did not verify:"),
      el("ul", {}, ...(report.failures || []).map((f) => el("li", {}, typeof f === "string" ? f : f.message || JSON.stringify(f))))));
  } catch (err) { say(box, err); }
});

// -- settings ---------------------------------------------------------------------
loaders.settings = loadSettings;

function renderSettings(s) {
  $("set-relay").textContent = me ? me.relay : "";
  $("set-folder").value = s.receive_folder || "";
  $("set-layout").value = s.layout || "";
  $("set-pacs").value = s.pacs || "";
  $("set-watch").checked = s.watch;
  $("watch-events").replaceChildren(...s.watch_events.slice().reverse().map((e) =>
    el("li", {}, `${when(e.at)}: ${e.event}${e.transfer_id ? ` ${e.transfer_id}` : ""}${e.sender ? ` from ${e.sender}` : ""}${e.message ? ` (${e.message})` : ""}`)));
}

async function loadSettings() {
  // Disabled while loading, so nothing typed meanwhile is overwritten.
  $("settings-fields").disabled = true;
  try { renderSettings(await api("GET", "/api/settings")); $("settings-fields").disabled = false; }
  catch (err) { say($("settings-msg"), err); }
}

$("settings-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const box = $("settings-msg");
  try {
    renderSettings(await api("POST", "/api/settings", { receive_folder: $("set-folder").value.trim() || null,
      layout: $("set-layout").value.trim(), pacs: $("set-pacs").value.trim(), watch: $("set-watch").checked }));
    good(box, "Saved.");
  } catch (err) { say(box, err); }
});

start();
