// Who is online in the place shown. Everyone shares general, so general's `users` pages
// (and the `join`/`leave` events) are everyone online; another room's list comes from
// `users` with `room`, asked again when its membership or someone's presence changes.
import { send } from "./link.js";
import { $, isRoom, keyOf, place, state } from "./state.js";

const everyone = new Map(); // lower-cased name -> name as registered: online anywhere
let here = new Map();       // the room shown: its online members
let hereKey = null;

function lower(name) {
  return name.toLowerCase();
}

export function onUsers(frame) {
  const key = frame.room === undefined ? "#general" : keyOf(frame);
  if (key === "#general") {
    for (const name of frame.online || []) everyone.set(lower(name), name);
  }
  if (key === hereKey) for (const name of frame.online || []) here.set(lower(name), name);
  if (frame.more && (frame.online || []).length) {
    send({ type: "users", room: key.slice(1), after: frame.online[frame.online.length - 1] });
  }
  render();
}

export function onJoin(frame) {
  everyone.set(lower(frame.username), frame.username);
  if (hereKey === "#general") here.set(lower(frame.username), frame.username);
  else if (hereKey && isRoom(hereKey)) ask(hereKey); // online now; a member here? the server knows
  render();
}

export function onLeave(frame) {
  everyone.delete(lower(frame.username));
  here.delete(lower(frame.username));
  render();
}

export function memberChanged(key, frame) {
  if (key !== hereKey) return;
  if (frame.change === "joined") ask(key);
  else here.delete(lower(frame.username));
  render();
}

/** A new session: who is online comes again with its `users`. */
export function forgetPresence() {
  everyone.clear();
}

/** A new place is shown, or the session is new: start its list over. */
export function refreshPresence() {
  hereKey = state.current;
  here = new Map();
  if (!hereKey) return;
  if (isRoom(hereKey)) ask(hereKey);
  render();
}

function ask(key) {
  here = new Map();
  send({ type: "users", room: key.slice(1) });
}

function render() {
  if (!hereKey) return;
  let names;
  if (isRoom(hereKey)) {
    names = [...here.values()];
  } else {
    const other = place(hereKey).name;
    names = [state.me, ...(everyone.has(lower(other)) ? [other] : [])];
  }
  names.sort((a, b) => lower(a).localeCompare(lower(b)));
  $("presence-title").textContent = `Online here (${names.length})`;
  $("presence").replaceChildren(...names.map((name) => {
    const item = document.createElement("li");
    item.textContent = name === state.me ? `${name} (you)` : name;
    return item;
  }));
}
