// The sidebar's lists of rooms and direct conversations with their unread counts, and
// switching the place shown.
import { placeTitle, renderMessages } from "./conversation.js";
import { refreshPresence } from "./presence.js";
import { $, askHistory, isRoom, place, state, unread } from "./state.js";

export function renderSidebar() {
  const rooms = [], dms = [];
  const keys = [...state.places.keys()].sort((a, b) => a.localeCompare(b));
  for (const key of keys) (isRoom(key) ? rooms : dms).push(sidebarItem(state.places.get(key)));
  const focused = document.activeElement?.dataset?.key; // redrawing must not lose the keyboard's place
  $("room-list").replaceChildren(...rooms);
  $("dm-list").replaceChildren(...dms);
  if (focused) document.querySelector(`#sidebar button[data-key="${CSS.escape(focused)}"]`)?.focus();
}

function sidebarItem(found) {
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.key = found.key;
  button.setAttribute("aria-current", String(found.key === state.current));
  const name = document.createElement("span");
  name.textContent = isRoom(found.key) ? found.key : found.name;
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

/** Show a place: its header, its messages (the newest page asked for on the first visit). */
export function show(key) {
  if (key !== state.current) $("send-error").textContent = ""; // the same place again keeps its draft's reason
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
