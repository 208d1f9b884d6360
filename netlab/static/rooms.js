// Rooms as the user manages them: create, join a public one, leave, invite, set the topic,
// start a direct conversation; and the frames that change the list of places.
import { eventLine } from "./conversation.js";
import { send } from "./link.js";
import { memberChanged } from "./presence.js";
import { renderSidebar, show } from "./sidebar.js";
import { $, dmKey, keyOf, newId, place, state, update } from "./state.js";

let listingAll = false; // a `rooms` with `all` is being paged through
const opening = new Set(); // rooms asked for (created or joined) here: shown when `joined` comes
const invites = new Map(); // request id -> "name to #room", each invite not answered yet, in order
let listed = null; // after a login: the rooms the server lists, to forget those left meanwhile

/** A login: the `rooms` that follows is every room of this account. */
export function expectRoomList() {
  listed = new Set(["#general"]);
}

/** Send a request with an id of its own; the id, or null when not connected. */
function request(frame) {
  const id = newId("r");
  if (!send({ ...frame, id })) {
    $("status").textContent = "not connected: try again once the page is connected";
    return null;
  }
  return id;
}

export function onRooms(frame) {
  const entries = frame.rooms || [];
  for (const entry of entries) {
    if (entry.member === false) state.publicRooms.set(entry.room, entry);
    else update(place(`#${entry.room}`), entry);
    if (entry.member !== false) listed?.add(`#${entry.room}`);
  }
  for (const entry of frame.conversations || []) update(place(dmKey(entry.with), entry.with), entry);
  if (frame.more && entries.length) {
    send({ type: "rooms", after: entries[entries.length - 1].room, ...(listingAll ? { all: true } : {}) });
  } else {
    listingAll = false;
    if (listed) forgetUnlisted();
  }
  renderSidebar();
  renderPublicRooms();
}

export function onJoined(frame) {
  const key = keyOf(frame);
  const found = place(key);
  update(found, frame);
  found.private = frame.private;
  state.publicRooms.delete(frame.room);
  renderPublicRooms();
  if (opening.delete(frame.room)) show(key);
  else renderSidebar();
  eventLine(key, `you are in #${frame.room} (${frame.members} members)`);
}

export function onLeft(frame) {
  const key = keyOf(frame);
  state.places.delete(key);
  if (state.current === key) show("#general");
  else renderSidebar();
  $("status").textContent = `you left #${frame.room}`;
}

export function onTopic(frame) {
  const key = keyOf(frame);
  place(key).topic = frame.text;
  eventLine(key, `${frame.by} set the topic: ${frame.text}`);
  if (key === state.current) $("place-topic").textContent = frame.text;
}

export function onMember(frame) {
  const key = keyOf(frame);
  eventLine(key, `${frame.username} ${frame.change === "joined" ? "joined" : "left"} the room`);
  memberChanged(key, frame);
}

function forgetUnlisted() {
  // Rooms left (or lost) on another device while this page was away.
  for (const key of [...state.places.keys()]) {
    if (key.startsWith("#") && !listed.has(key)) state.places.delete(key);
  }
  listed = null;
  if (!state.places.has(state.current)) show("#general");
}

function renderPublicRooms() {
  const items = [...state.publicRooms.values()].map((entry) => {
    const button = document.createElement("button");
    button.type = "button";
    const label = document.createElement("span"); // a sidebar button's first span is its name
    label.textContent = `Join #${entry.room}`;
    button.append(label);
    const about = entry.topic ? ` (${entry.members} members, ${entry.topic})` : ` (${entry.members} members)`;
    button.setAttribute("aria-label", `Join #${entry.room}${about}`);
    button.addEventListener("click", () => {
      if (request({ type: "join", room: entry.room })) opening.add(entry.room);
    });
    const item = document.createElement("li");
    item.append(button);
    return item;
  });
  if (!items.length) {
    const none = document.createElement("li");
    none.textContent = listingAll ? "looking…" : "no other public rooms";
    items.push(none);
  }
  $("public-rooms").replaceChildren(...items);
}

function submitted(form, action) {
  $(form).addEventListener("submit", (event) => {
    event.preventDefault();
    action();
  });
}

export function wireRoomActions() {
  $("join-rooms").addEventListener("toggle", () => {
    if (!$("join-rooms").open) return;
    state.publicRooms.clear();
    listingAll = true;
    renderPublicRooms();
    request({ type: "rooms", all: true });
  });
  submitted("create-form", () => {
    const room = $("new-room").value.trim();
    if (request({ type: "create", room, private: $("new-room-private").checked })) {
      opening.add(room);
      $("new-room").value = "";
      $("new-room-private").checked = false;
    }
  });
  submitted("dm-form", () => {
    const name = $("dm-user").value.trim();
    if (!name) return;
    $("dm-user").value = "";
    show(dmKey(name)); // its history comes back with the name as registered, or no_such_user
  });
  submitted("invite-form", () => {
    const username = $("invite-user").value.trim();
    const id = request({ type: "invite", room: state.current.slice(1), username });
    if (id !== null) {
      invites.set(id, `${username} to ${state.current}`);
      $("invite-user").value = "";
    }
  });
  submitted("topic-form", () => {
    request({ type: "topic", room: state.current.slice(1), text: $("topic-text").value });
  });
  $("leave-button").addEventListener("click", () => request({ type: "leave", room: state.current.slice(1) }));
}

/** An `error` answering an invite (no_such_user, ...), by its id: that invite is done. */
export function onRoomError(frame) {
  invites.delete(frame.id);
}

/** An `ok` answering one of these requests: an invite's names the oldest one still open
 * (the server answers a session's requests in order). */
export function onRoomOk(frame) {
  if (frame.op !== "invite") return;
  const [id, label] = invites.entries().next().value || [null, ""];
  invites.delete(id);
  $("status").textContent = `invited ${label}`;
}

/** A conversation opened with nobody: forget it again. */
export function dropPlace(key) {
  if (!state.places.delete(key)) return;
  if (state.current === key) show("#general");
  else renderSidebar();
}
