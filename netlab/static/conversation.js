// The place shown: its messages in seq order with a separator at each new day, your own
// marked and deletable, @mentions of you highlighted; older pages load at the top
// (scrolled there, or with the button) without moving what you were reading; `read` is sent
// for what was shown. Server text only ever goes in through textContent.
import { send } from "./link.js";
import { renderSidebar } from "./sidebar.js";
import { $, askHistory, isRoom, place, state, target } from "./state.js";

const READ_DELAY_MS = 400; // `read` frames coalesced: one per burst of messages shown
const NEAR_TOP_PX = 60;
const SPACE = "\u2002";
let readTimer = null;

export function mentionsMe(text) {
  if (!state.me) return false;
  const name = state.me.replace(/[.\-]/g, "\\$&");
  // The name ends where a name cannot go on ("@ann." at a sentence's end is ann too).
  return new RegExp(`(^|[^\\w.-])@${name}(?![\\w-]|\\.[\\w.-])`, "i").test(text);
}

export function placeTitle(found) {
  return isRoom(found.key) ? found.key : `${found.name} (direct)`;
}

/** Draw the whole conversation; `keep` holds the reader's place when a page came in above. */
export function renderMessages(keep = false) {
  const found = place(state.current);
  const list = $("messages");
  const fromBottom = list.scrollHeight - list.scrollTop;
  const olderFocused = document.activeElement?.id === "older-button"; // the keyboard's place
  const items = [];
  if (found.hasOlder) items.push(olderButton(found));
  else if (found.loaded) items.push(line("start", `the start of ${placeTitle(found)}`));
  let day = null;
  for (const seq of [...found.messages.keys()].sort((a, b) => a - b)) {
    const message = found.messages.get(seq);
    const messageDay = dayOf(message);
    if (messageDay !== day) items.push(daySeparator(message));
    day = messageDay;
    items.push(messageItem(message));
  }
  for (const said of state.pending.values()) if (said.key === found.key) items.push(pendingItem(said.frame));
  list.replaceChildren(...items);
  list.scrollTop = keep ? list.scrollHeight - fromBottom : list.scrollHeight;
  if (olderFocused) ($("older-button") || list).focus({ preventScroll: true });
  markRead();
  loadOlderIfShort(found);
}

/** A new message of the place shown: added at the end, or the whole list redrawn if not last. */
export function appendMessage(found, message) {
  const list = $("messages");
  const shown = list.querySelectorAll("li[data-seq]");
  const last = shown.length ? found.messages.get(Number(shown[shown.length - 1].dataset.seq)) : null;
  // Shown already (a resend's answer after the gap was filled) or older: draw it all again.
  if (last && last.seq >= message.seq) return renderMessages(true);
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const waiting = list.querySelector("li.pending"); // messages not acknowledged stay last
  if (!last || dayOf(last) !== dayOf(message)) list.insertBefore(daySeparator(message), waiting);
  list.insertBefore(messageItem(message), waiting);
  if (stick) list.scrollTop = list.scrollHeight;
  markRead();
}

/** A message sent and not acknowledged yet: shown last, as sending, until it comes back. */
export function pendingItem(frame) {
  const item = line("pending", "");
  item.dataset.id = frame.id;
  const sending = document.createElement("span");
  sending.className = "from";
  sending.textContent = "sending…";
  item.append(sending, SPACE, document.createTextNode(frame.text));
  return item;
}

export function showPending(frame) {
  const list = $("messages");
  list.append(pendingItem(frame));
  list.scrollTop = list.scrollHeight;
}

export function eventLine(key, text) {
  // A line about the place (a topic, a member) shown only while it is the current one.
  if (key === state.current) $("messages").append(line("event", text));
}

function line(className, text) {
  const item = document.createElement("li");
  item.className = className;
  item.textContent = text;
  return item;
}

function dayOf(message) {
  return new Date(message.ts).toDateString(); // the day in the browser's own time zone
}

function daySeparator(message) {
  const item = line("day", "");
  const time = document.createElement("time");
  const when = new Date(message.ts);
  time.dateTime = when.toISOString().slice(0, 10);
  time.textContent = when.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long", year: "numeric" });
  item.append(time);
  item.setAttribute("role", "separator");
  return item;
}

function olderButton(found) {
  const item = line("older", "");
  const button = document.createElement("button");
  button.type = "button";
  button.id = "older-button";
  button.textContent = found.loadingOlder ? "loading older messages…" : "Load older messages";
  button.addEventListener("click", () => loadOlder(found));
  item.append(button);
  return item;
}

function messageItem(message) {
  const item = document.createElement("li");
  item.dataset.seq = String(message.seq);
  const own = message.from === state.me;
  if (own) {
    item.classList.add("own");
    item.append(deleteButton(message)); // first, floated right: the line still ends with the text
  }
  if (!own && mentionsMe(message.text)) item.classList.add("mention");
  const time = document.createElement("time");
  const when = new Date(message.ts); // ISO 8601, UTC: shown in the browser's own zone
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = message.from;
  // En spaces between the parts: copied text and screen readers keep them apart.
  item.append(time, SPACE, from, SPACE, document.createTextNode(message.text));
  return item;
}

function deleteButton(message) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "delete";
  button.textContent = "Delete";
  button.setAttribute("aria-label", `Delete your message: ${message.text.slice(0, 40)}`);
  button.addEventListener("click", () => {
    if (!send({ type: "delete", seq: message.seq, ...target(state.current) })) {
      $("status").textContent = "not connected: nothing was deleted";
    }
  });
  return button;
}

// ---- scroll-back ------------------------------------------------------------------

function loadOlder(found) {
  if (!found.hasOlder || found.loadingOlder || found.messages.size === 0) return;
  found.loadingOlder = true;
  askHistory(found.key, "before", { before: Math.min(...found.messages.keys()) });
  const button = $("older-button");
  if (button) button.textContent = "loading older messages…";
}

function loadOlderIfShort(found) {
  // A first page shorter than the list cannot be scrolled: fetch more until it can.
  const list = $("messages");
  if (list.scrollHeight <= list.clientHeight) loadOlder(found);
}

export function watchScrolling() {
  $("messages").addEventListener("scroll", () => {
    if (state.current && $("messages").scrollTop < NEAR_TOP_PX) loadOlder(place(state.current));
  });
}

// ---- read markers -----------------------------------------------------------------

export function markRead() {
  // Coalesced: a burst of messages (or a history page) is one `read`, sent once it is seen.
  if (readTimer === null) readTimer = setTimeout(readNow, READ_DELAY_MS);
}

/** Leaving a place: what was shown of it is read now, not after the next one is shown. */
export function flushRead() {
  if (readTimer !== null) readNow();
}

function readNow() {
  clearTimeout(readTimer);
  readTimer = null;
  const found = state.places.get(state.current); // none: the place was just left or dropped
  if (document.visibilityState !== "visible" || !found) return;
  const shown = Math.max(0, ...found.messages.keys());
  if (shown > found.readSeq && send({ type: "read", seq: shown, ...target(found.key) })) {
    found.readSeq = shown;
    renderSidebar();
  }
}
