// The draft box: Enter sends, Shift+Enter is a new line. Each `say` carries an id and is
// remembered until it comes back; after a reconnect every one not seen back is sent again
// with the same id (a version 2 id is an idempotency key: the server never stores it
// twice). A message the server refuses goes back into the box with the reason; one that
// cannot be sent (not connected) never leaves it.
import { showPending } from "./conversation.js";
import { send } from "./link.js";
import { show } from "./sidebar.js";
import { $, isRoom, newId, place, state } from "./state.js";

export function onDraftKey(event) {
  if (event.key !== "Enter" || event.shiftKey || event.isComposing) return; // Shift+Enter: a new line
  event.preventDefault();
  const draft = $("draft");
  const text = draft.value;
  if (!text.trim() || !state.current) return;
  const key = state.current;
  const frame = { type: "say", id: newId("s"), text, ...(isRoom(key) ? { room: key.slice(1) } : { to: place(key).name }) };
  if (!send(frame)) {
    $("send-error").textContent = "not connected: the message was not sent (it is sent when you press Enter again)";
    return; // the text stays in the box
  }
  state.pending.set(frame.id, { frame, key });
  showPending(frame);
  draft.value = "";
  $("send-error").textContent = "";
}

/** Our own message came back: it was stored, nothing to resend. */
export function acknowledged(message) {
  if (message.from !== state.me || !state.pending.delete(message.id)) return;
  document.querySelector(`#messages li.pending[data-id="${CSS.escape(message.id)}"]`)?.remove();
}

/** After logging in again: what the last connection may have lost, with the same ids. */
export function resendPending() {
  for (const { frame } of state.pending.values()) send(frame);
}

/** An `error` with a say's id: the message stays the user's, back in the box with why. */
export function refused(id, reason) {
  const said = state.pending.get(id);
  if (!said) return false;
  state.pending.delete(id);
  document.querySelector(`#messages li.pending[data-id="${CSS.escape(id)}"]`)?.remove();
  if (said.key !== state.current) show(said.key);
  const draft = $("draft");
  draft.value = draft.value ? `${said.frame.text}\n${draft.value}` : said.frame.text;
  $("send-error").textContent = `not sent: ${reason}`;
  draft.focus();
  return true;
}
