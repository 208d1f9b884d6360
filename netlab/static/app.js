// netlab chat in the browser: the same JSON frames as the terminal client, over a
// WebSocket at /ws (PROTOCOL.md, "Version 2" and "Transports"). Plain JavaScript, no
// framework and no build step: the server ships this file as it is, and its CSP allows
// no inline script, so every handler is attached here. Text from the server is only ever
// put into the page with textContent, never parsed as HTML.
"use strict";

// The terminal client's sentences (netlab/client/words.py), so both clients say the same.
const ERROR_SENTENCES = {
  bad_frame: "the server could not read what this client sent",
  frame_too_large: "a request was larger than the server accepts",
  unknown_type: "the server does not know that request",
  bad_request: "the server rejected that request as malformed",
  not_authenticated: "log in first",
  already_authenticated: "you are already logged in",
  invalid_username: "a username is 1 to 32 letters, digits, '_', '.' or '-'",
  invalid_password: "a password is 8 to 256 characters",
  username_taken: "that username is taken",
  bad_credentials: "unknown user or wrong password",
  rate_limited: "you are sending too fast (or failed to log in too often); wait a moment",
  auth_timeout: "the server closed the connection: no login in time",
  server_full: "the server is full; try again later",
  slow_consumer: "the server dropped you because you were not reading",
  invalid_room: "a room name is 1 to 32 of a-z, 0-9, '_' and '-', starting with a letter or digit",
  no_such_room: "there is no such room (or it is private and you are not in it)",
  room_exists: "a room of that name exists already",
  not_member: "you are not in that room: join it first",
  no_such_user: "there is no user of that name",
  forbidden: "you may not do that (only a room's owner sets its topic; nobody leaves general; " +
    "only your own messages can be deleted)",
  unavailable: "the server cannot store messages right now; try again in a moment",
  banned: "the operator banned this account",
  muted: "the operator muted you: your messages are not sent",
};
const TOLD_BY_THE_SERVER = new Set(["banned", "muted"]); // their `message` says until when
const AUTH_FAILURES = new Set(["invalid_username", "invalid_password", "username_taken", "bad_credentials"]);
const HISTORY_PAGE = 50;
const READ_DELAY_MS = 400; // `read` frames coalesced: one per burst of messages shown

const $ = (id) => document.getElementById(id);

// Everything the page knows. A place is a room ("#name") or a direct conversation
// ("@name"); both are keyed the same way so the sidebar and the conversation need not care.
const state = {
  ws: null,
  me: null,             // username as registered, once logged in
  registering: false,
  places: new Map(),    // key -> {key, room|with, topic, lastSeq, readSeq, messages: Map seq -> message}
  current: null,        // key of the place shown
  pending: new Map(),   // say id -> {text, key}: sent, not yet seen back
  nextId: 1,
  readTimer: null,
};

function sentence(frame) {
  let text = ERROR_SENTENCES[frame.code] || frame.message || frame.code;
  if (TOLD_BY_THE_SERVER.has(frame.code) && frame.message) text += ` (${frame.message})`;
  return text;
}

function send(frame) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  state.ws.send(JSON.stringify(frame));
  return true;
}

// ---- connection -------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  state.ws = ws;
  ws.addEventListener("message", (event) => receive(JSON.parse(event.data)));
  ws.addEventListener("close", (event) => {
    $("login-button").disabled = true;
    const why = event.reason || (event.code === 1001 ? "the server is stopping" : "the connection was lost");
    setStatus(`disconnected: ${why}`);
    $("connection").textContent = `disconnected: ${why}; reload the page to connect again`;
  });
}

const HANDLERS = {
  welcome: onWelcome, ok: onOk, error: onError, message: onMessage, history: onHistory,
  rooms: onRooms, joined: onJoined, left: onLeft, topic: onTopic, deleted: onDeleted,
  read: onRead, member: onMember, notice: (f) => eventLine(state.current, `notice from the operator: ${f.text}`),
  kicked: (f) => setStatus(`the operator removed this session: ${f.reason}`),
  shutdown: (f) => setStatus(`the server is stopping: ${f.reason}`),
};

function receive(frame) {
  const handler = HANDLERS[frame.type];
  if (handler) handler(frame); // presence (join, leave, users) and pong: not shown yet
}

function onWelcome(frame) {
  if (!(frame.versions || []).includes(2)) {
    $("connection").textContent = "this server is too old for the browser client (no protocol version 2)";
    return;
  }
  $("connection").textContent = "connected";
  $("login-button").disabled = false;
}

// ---- logging in -------------------------------------------------------------------

function setMode(registering) {
  state.registering = registering;
  $("again-label").hidden = !registering;
  $("password-again").required = registering;
  $("password").autocomplete = registering ? "new-password" : "current-password";
  $("login-button").textContent = registering ? "Register" : "Log in";
  $("mode-button").textContent = registering ? "Have an account? Log in" : "New here? Register";
  $("login-error").textContent = "";
}

function submitLogin(event) {
  event.preventDefault(); // nothing is posted anywhere: the password goes only into the WebSocket
  const username = $("username").value.trim();
  const password = $("password").value;
  if (state.registering && password !== $("password-again").value) {
    $("login-error").textContent = "the two passwords differ";
    return;
  }
  $("login-error").textContent = "";
  const type = state.registering ? "register" : "login";
  if (!send({ type, username, password, protocol: 2 })) $("login-error").textContent = "not connected";
}

function onOk(frame) {
  if (frame.op !== "login" && frame.op !== "register") return;
  state.me = frame.username;
  $("password").value = ""; // kept no longer than the request needed it
  $("password-again").value = "";
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  $("me").textContent = `signed in as ${state.me}`;
  show("#general", false); // the server sends general's history right after `ok` unasked
  $("draft").focus();
}

function onError(frame) {
  if (!state.me && AUTH_FAILURES.has(frame.code)) {
    $("login-error").textContent = sentence(frame);
    return;
  }
  const said = state.pending.get(frame.id);
  if (said) return refused(frame.id, said, sentence(frame));
  if (!state.me) $("login-error").textContent = sentence(frame);
  else setStatus(`error: ${sentence(frame)}`);
}

// ---- places (rooms and conversations) -------------------------------------------

function keyOf(frame) {
  return frame.room !== undefined ? `#${frame.room}` : `@${frame.with}`;
}

function place(key) {
  let found = state.places.get(key);
  if (!found) {
    found = { key, topic: "", lastSeq: 0, readSeq: 0, messages: new Map(), loaded: false };
    state.places.set(key, found);
  }
  return found;
}

function target(key) {
  // The member a request names its place by: `room` or, for a conversation, `with`/`to`.
  return key.startsWith("#") ? { room: key.slice(1) } : { with: key.slice(1) };
}

function onRooms(frame) {
  for (const entry of frame.rooms || []) {
    if (entry.member === false) continue; // public rooms not joined: the join list, not the sidebar
    update(place(`#${entry.room}`), entry);
  }
  for (const entry of frame.conversations || []) update(place(`@${entry.with}`), entry);
  if (frame.more && frame.rooms.length) send({ type: "rooms", after: frame.rooms[frame.rooms.length - 1].room });
  renderSidebar();
}

function update(found, entry) {
  found.lastSeq = Math.max(found.lastSeq, entry.last_seq || 0);
  found.readSeq = Math.max(found.readSeq, entry.read_seq || 0);
  if (entry.topic !== undefined) found.topic = entry.topic;
}

function onJoined(frame) {
  update(place(keyOf(frame)), frame);
  eventLine(keyOf(frame), `you are in #${frame.room} (${frame.members} members)`);
  renderSidebar();
}

function onLeft(frame) {
  const key = keyOf(frame);
  state.places.delete(key);
  if (state.current === key) show("#general");
  renderSidebar();
}

function onTopic(frame) {
  const key = keyOf(frame);
  place(key).topic = frame.text;
  eventLine(key, `${frame.by} set the topic: ${frame.text}`);
  if (key === state.current) $("place-topic").textContent = frame.text;
}

function onMember(frame) {
  eventLine(keyOf(frame), `${frame.username} ${frame.change === "joined" ? "joined" : "left"} the room`);
}

function onRead(frame) {
  // Another device of this account read up to here: the count follows it.
  const found = state.places.get(keyOf(frame));
  if (found) found.readSeq = Math.max(found.readSeq, frame.seq);
  renderSidebar();
}

function unread(found) {
  return Math.max(0, found.lastSeq - found.readSeq);
}

function renderSidebar() {
  const rooms = [], dms = [];
  const keys = [...state.places.keys()].sort((a, b) => a.localeCompare(b, undefined, { sensitivity: "base" }));
  for (const key of keys) (key.startsWith("#") ? rooms : dms).push(sidebarItem(state.places.get(key)));
  $("room-list").replaceChildren(...rooms);
  $("dm-list").replaceChildren(...dms);
}

function sidebarItem(found) {
  const button = document.createElement("button");
  button.type = "button";
  button.setAttribute("aria-current", String(found.key === state.current));
  const name = document.createElement("span");
  name.textContent = found.key.startsWith("#") ? found.key : found.key.slice(1);
  button.append(name);
  const count = unread(found);
  if (count && found.key !== state.current) {
    const badge = document.createElement("span");
    badge.className = "unread";
    badge.textContent = String(count);
    badge.setAttribute("aria-label", `${count} unread`);
    button.append(badge);
  }
  button.addEventListener("click", () => show(found.key));
  const item = document.createElement("li");
  item.append(button);
  return item;
}

// ---- the conversation -------------------------------------------------------------

function show(key, fetch = true) {
  state.current = key;
  const found = place(key);
  $("place-name").textContent = key.startsWith("#") ? key : `${key.slice(1)} (direct)`;
  $("place-topic").textContent = found.topic;
  $("send-error").textContent = "";
  renderMessages();
  renderSidebar();
  // Each visit asks for the newest page: what came while the place was not shown is in it.
  if (fetch) send({ type: "history", limit: HISTORY_PAGE, ...target(key) });
}

function onHistory(frame) {
  const found = place(keyOf(frame));
  for (const message of frame.messages || []) found.messages.set(message.seq, message);
  found.loaded = true;
  if (found.key === state.current) renderMessages();
}

function onMessage(frame) {
  let key;
  if (frame.to !== undefined) key = `@${frame.from === state.me ? frame.to : frame.from}`;
  else key = `#${frame.room || "general"}`;
  const isNew = !state.places.has(key); // a first direct message: a new sidebar entry
  const found = place(key);
  found.messages.set(frame.seq, frame);
  found.lastSeq = Math.max(found.lastSeq, frame.seq);
  if (frame.from === state.me && state.pending.delete(frame.id) && key === state.current) {
    $("send-error").textContent = "";
  }
  if (key === state.current) {
    const list = $("messages");
    const stick = atBottom(list);
    list.append(messageItem(frame));
    if (stick) list.scrollTop = list.scrollHeight;
    markRead();
  }
  if (isNew || key !== state.current) renderSidebar();
}

function onDeleted(frame) {
  const found = state.places.get(keyOf(frame));
  if (!found) return;
  found.messages.delete(frame.seq);
  if (found.key === state.current) renderMessages();
}

function atBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
}

function renderMessages() {
  const found = place(state.current);
  const seqs = [...found.messages.keys()].sort((a, b) => a - b);
  const list = $("messages");
  list.replaceChildren(...seqs.map((seq) => messageItem(found.messages.get(seq))));
  list.scrollTop = list.scrollHeight;
  markRead();
}

function messageItem(message) {
  const item = document.createElement("li");
  item.dataset.seq = String(message.seq);
  if (message.from === state.me) item.classList.add("own");
  const time = document.createElement("time");
  const when = new Date(message.ts); // ISO 8601, UTC: shown in the browser's own zone
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = message.from;
  item.append(time, from, document.createTextNode(message.text));
  return item;
}

function eventLine(key, text) {
  // A line about the place (a topic, a member) shown only while it is the current one.
  if (key !== state.current) return;
  const item = document.createElement("li");
  item.className = "event";
  item.textContent = text;
  $("messages").append(item);
}

// ---- read markers -----------------------------------------------------------------

function markRead() {
  // Coalesced: a burst of messages (or a history page) is one `read`, sent once it is seen.
  if (state.readTimer !== null) return;
  state.readTimer = setTimeout(() => {
    state.readTimer = null;
    if (document.visibilityState !== "visible" || !state.current) return;
    const found = place(state.current);
    const shown = Math.max(0, ...found.messages.keys());
    if (shown > found.readSeq && send({ type: "read", seq: shown, ...target(found.key) })) {
      found.readSeq = shown;
      renderSidebar();
    }
  }, READ_DELAY_MS);
}

// ---- sending ----------------------------------------------------------------------

function onDraftKey(event) {
  if (event.key !== "Enter" || event.shiftKey || event.isComposing) return; // Shift+Enter: a new line
  event.preventDefault();
  const draft = $("draft");
  const text = draft.value;
  if (!text.trim()) return;
  const id = `w${state.nextId++}`;
  const to = state.current.startsWith("#") ? { room: state.current.slice(1) } : { to: state.current.slice(1) };
  if (!send({ type: "say", id, text, ...to })) {
    $("send-error").textContent = "not connected: the message was not sent";
    return; // the text stays in the box
  }
  state.pending.set(id, { text, key: state.current });
  draft.value = "";
}

function refused(id, said, reason) {
  // The message stays the user's: back into the box (before anything typed since), with why.
  state.pending.delete(id);
  if (said.key !== state.current) show(said.key);
  const draft = $("draft");
  draft.value = draft.value ? `${said.text}\n${draft.value}` : said.text;
  $("send-error").textContent = `not sent: ${reason}`;
  draft.focus();
}

function setStatus(text) {
  $("status").textContent = text;
}

// ---- start ------------------------------------------------------------------------

function start() {
  $("login-form").addEventListener("submit", submitLogin);
  $("mode-button").addEventListener("click", () => setMode(!state.registering));
  $("draft").addEventListener("keydown", onDraftKey);
  document.addEventListener("visibilitychange", markRead);
  setMode(false);
  connect();
}

start();
