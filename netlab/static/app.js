// netlab chat in the browser: the same JSON frames as the terminal client, over a
// WebSocket at /ws (PROTOCOL.md, "Version 2" and "Transports"). Plain JavaScript modules, no
// framework and no build step: the server ships these files as they are, and its CSP
// allows no inline script, so every handler is attached in code. Text from the server only
// ever goes into the page with textContent, never parsed as HTML.
//
// This module routes each frame to the module whose job it is:
//   link.js (the connection, reconnecting), state.js (places, messages, history pages),
//   account.js (logging in, the password), sidebar.js (the lists, switching places),
//   rooms.js (room management), conversation.js (the messages shown), presence.js (who is
//   online), sending.js (the draft, resending), notify.js (mentions while hidden).
import { authError, onOk, onWelcome, wireAccount } from "./account.js";
import {
  appendMessage, eventLine, markRead, mentionsMe, placeTitle, renderMessages, watchScrolling,
} from "./conversation.js";
import { resumeLink, startLink, stopLink } from "./link.js";
import { notifyMention, wireNotifications } from "./notify.js";
import { onJoin, onLeave, onUsers } from "./presence.js";
import {
  dropPlace, onJoined, onLeft, onMember, onRoomError, onRoomOk, onRooms, onTopic, wireRoomActions,
} from "./rooms.js";
import { acknowledged, onDraftKey, refused } from "./sending.js";
import { renderSidebar, show } from "./sidebar.js";
import { $, addMessage, connectionLost, dmKey, fillGaps, forgetHistory, keyOf, place, state, takeHistory } from "./state.js";
import { sentence } from "./words.js";

const HANDLERS = {
  welcome: onWelcome,
  ok: (frame) => { onOk(frame); onRoomOk(frame); },
  error: onError,
  message: onMessage,
  history: onHistory,
  rooms: (frame) => { onRooms(frame); if (!frame.more) fillGaps(); },
  joined: onJoined, left: onLeft, topic: onTopic, member: onMember, deleted: onDeleted, read: onRead,
  users: onUsers, join: onJoin, leave: onLeave,
  notice: (frame) => eventLine(state.current, `notice from the operator: ${frame.text}`),
  kicked: (frame) => { stopLink("the operator removed this session"); setStatus(`the operator removed this session: ${frame.reason}`); },
  shutdown: (frame) => setStatus(`the server is stopping: ${frame.reason}`),
};

function onError(frame) {
  if (authError(frame)) return;
  if (refused(frame.id, sentence(frame))) return;
  const history = forgetHistory(frame.id);
  if (history && history.key.startsWith("@") && frame.code === "no_such_user") dropPlace(history.key);
  // Banned: not by itself. No login in time: not until someone types into the login form.
  if (frame.code === "banned") stopLink("this account is banned");
  if (frame.code === "auth_timeout") stopLink();
  onRoomError(frame);
  if (state.me) setStatus(`error: ${sentence(frame)}`);
  else $("login-error").textContent = sentence(frame);
}

function onMessage(frame) {
  let key, name;
  if (frame.to !== undefined) {
    name = frame.from === state.me ? frame.to : frame.from;
    key = dmKey(name);
  } else {
    key = `#${frame.room || "general"}`;
  }
  const isNew = !state.places.has(key); // a first direct message: a new sidebar entry
  const found = place(key, name);
  addMessage(found, frame);
  acknowledged(frame);
  if (frame.from !== state.me && mentionsMe(frame.text)) notifyMention(frame, placeTitle(found), () => show(key));
  if (key === state.current) appendMessage(found, frame);
  if (isNew || key !== state.current) renderSidebar();
}

function onHistory(frame) {
  const { found, kind } = takeHistory(frame);
  if (found.key === state.current) {
    $("place-name").textContent = placeTitle(found);
    renderMessages(kind === "before");
  }
  if (kind === "newest") renderSidebar(); // a conversation's name, as registered
}

function onDeleted(frame) {
  const found = state.places.get(keyOf(frame));
  if (found && found.messages.delete(frame.seq) && found.key === state.current) renderMessages(true);
}

function onRead(frame) {
  // Another device of this account read up to here: the count follows it.
  const found = state.places.get(keyOf(frame));
  if (found) found.readSeq = Math.max(found.readSeq, frame.seq);
  renderSidebar();
}

function setStatus(text) {
  $("status").textContent = text;
}

function lost() {
  connectionLost();
  if (!state.me) $("login-button").disabled = true;
}

function start() {
  wireAccount();
  wireRoomActions();
  wireNotifications();
  watchScrolling();
  $("draft").addEventListener("keydown", onDraftKey);
  $("login-form").addEventListener("input", resumeLink);
  document.addEventListener("visibilitychange", markRead);
  startLink({ frame: (frame) => HANDLERS[frame.type]?.(frame), lost });
}

start();
