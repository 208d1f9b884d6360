// The sidebar's lists of rooms and direct conversations with their unread counts, and
// switching the place shown.
import { flushRead, placeTitle, renderMessages } from "./conversation.js";
import { refreshPresence } from "./presence.js";
import { $, askHistory, isRoom, place, state, unread } from "./state.js";

// Each place keeps its one item, updated in place: redrawing moves no focus and no element
// a screen reader (or a test) is holding.
const items = new Map(); // key -> <li>

export function renderSidebar() {
  const rooms = [], dms = [];
  const keys = [...state.places.keys()].sort((a, b) => a.localeCompare(b));
  for (const key of keys) (isRoom(key) ? rooms : dms).push(sidebarItem(state.places.get(key)));
  for (const key of items.keys()) if (!state.places.has(key)) items.delete(key);
  placeChildren($("room-list"), rooms);
  placeChildren($("dm-list"), dms);
  // The tab's title counts what is unread elsewhere, for a tab in the background.
  let total = 0;
  for (const found of state.places.values()) if (found.key !== state.current) total += unread(found);
  document.title = total ? `(${total}) netlab chat` : "netlab chat";
}

function placeChildren(list, wanted) {
  const same = list.children.length === wanted.length && wanted.every((item, i) => list.children[i] === item);
  if (!same) list.replaceChildren(...wanted);
}

function sidebarItem(found) {
  let item = items.get(found.key);
  if (!item) {
    item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.key = found.key;
    button.append(document.createElement("span"));
    button.addEventListener("click", () => show(found.key));
    item.append(button);
    items.set(found.key, item);
  }
  const button = item.firstChild;
  button.setAttribute("aria-current", String(found.key === state.current));
  button.firstChild.textContent = isRoom(found.key) ? found.key : found.name;
  const count = found.key === state.current ? 0 : unread(found);
  let badge = button.querySelector(".unread");
  if (count && !badge) {
    badge = document.createElement("span");
    badge.className = "unread";
    button.append(badge);
  }
  if (count) {
    badge.textContent = String(count);
    badge.setAttribute("aria-label", `${count} unread`);
  } else {
    badge?.remove();
  }
  return item;
}

/** Show a place: its header, its messages (the newest page asked for on the first visit). */
export function show(key) {
  flushRead();
  if (key !== state.current) {
    // The same place again keeps its draft's reason; another place drops it, and the status
    // line of what was done or refused before (a refused invite is not about the next room).
    $("send-error").textContent = "";
    $("status").textContent = "";
  }
  state.current = key;
  const found = place(key);
  $("place-name").textContent = placeTitle(found);
  $("place-topic").textContent = found.topic;
  $("topic-text").value = found.topic;
  const settings = $("room-actions");
  settings.hidden = !isRoom(key) || key === "#general";
  settings.open = false;
  $("topic-form").hidden = found.owner !== undefined && found.owner !== state.me; // unknown: the server decides
  renderMessages();
  renderSidebar();
  refreshPresence();
  // Every message of a place arrives live once it is loaded, so one page per place is enough.
  if (!found.loaded && !state.histories.some((request) => request.key === key)) askHistory(key, "newest");
}
