// What the page knows: who is signed in, the places (rooms and direct conversations) with
// their messages by seq, and the history pages asked for. No drawing here: the other
// modules read this state and draw it.
import { send } from "./link.js";

export const $ = (id) => document.getElementById(id);

export const HISTORY_PAGE = 50;
const GAP_PAGE = 1000; // the protocol's largest page: a gap after a reconnect in few requests

// A tab's say ids must not repeat across reloads (a version 2 id is an idempotency key: a
// reused one would be taken for a resend and dropped), so each tab picks a random prefix.
const TAB = [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, "0")).join("");

export const state = {
  me: null,             // username as registered, once logged in
  credentials: null,    // {username, password}: in this tab's memory only, to log in again after a reconnect
  places: new Map(),    // key ("#room" or "@user" lower-cased) -> place
  publicRooms: new Map(), // public rooms this account is not in, from `rooms` with `all`
  current: null,        // key of the place shown
  pending: new Map(),   // say id -> {frame, key}: sent, not yet seen back (resent after a reconnect)
  histories: [],        // history requests not answered yet, in the order they were sent
  nextId: 1,
};

export function newId(kind) {
  return `${kind}${TAB}-${state.nextId++}`;
}

/** The key of the place a frame is about (`room`, or `with`/`to`/`from` for a conversation). */
export function keyOf(frame) {
  return frame.room !== undefined ? `#${frame.room}` : `@${frame.with.toLowerCase()}`;
}

export function dmKey(name) {
  return `@${name.toLowerCase()}`;
}

export function isRoom(key) {
  return key.startsWith("#");
}

export function place(key, name) {
  let found = state.places.get(key);
  if (!found) {
    found = {
      key, name: name || key.slice(1), topic: "", owner: undefined, lastSeq: 0, readSeq: 0,
      messages: new Map(), seen: 0, loaded: false, hasOlder: false, loadingOlder: false,
    };
    state.places.set(key, found);
  } else if (name) {
    found.name = name; // a conversation's name as registered, whatever case the user typed
  }
  return found;
}

/** The member a request names its place by: `room`, or `with` for a conversation. */
export function target(key) {
  return isRoom(key) ? { room: key.slice(1) } : { with: state.places.get(key)?.name || key.slice(1) };
}

export function update(found, entry) {
  found.lastSeq = Math.max(found.lastSeq, entry.last_seq || 0);
  found.readSeq = Math.max(found.readSeq, entry.read_seq || 0);
  if (entry.topic !== undefined) found.topic = entry.topic;
  if (entry.owner !== undefined) found.owner = entry.owner;
}

export function addMessage(found, message) {
  found.messages.set(message.seq, message); // keyed by seq: a message seen twice is kept once
  found.seen = Math.max(found.seen, message.seq);
  found.lastSeq = Math.max(found.lastSeq, message.seq);
}

export function unread(found) {
  return Math.max(0, found.lastSeq - found.readSeq);
}

// ---- history pages ----------------------------------------------------------------
// The server answers one session's requests in order; `history` carries no id, so each
// answer is matched to the oldest request still open for its place (an `error` carries the
// id and closes its request). `kind`: "newest", "before" (scroll-back) or "after" (a gap).

export function askHistory(key, kind, extra = {}, recheckUpTo = undefined) {
  const id = newId("h");
  const frame = { type: "history", id, ...target(key), ...extra };
  if (!frame.limit) frame.limit = kind === "after" ? GAP_PAGE : HISTORY_PAGE;
  if (send(frame)) state.histories.push({ id, key, kind, after: extra.after, recheckUpTo });
}

/** The login's own `history` of general comes unasked: expect it like an answer. */
export function expectLoginHistory() {
  state.histories = [{ id: null, key: "#general", kind: "newest" }];
}

export function forgetHistory(id) {
  const index = state.histories.findIndex((request) => request.id === id);
  if (index < 0) return null;
  return state.histories.splice(index, 1)[0];
}

/** File a `history` answer into its place; returns {found, kind}. */
export function takeHistory(frame) {
  const key = keyOf(frame);
  const index = state.histories.findIndex((request) => request.key === key);
  const request = index < 0 ? { kind: "newest" } : state.histories.splice(index, 1)[0];
  const kind = request.kind;
  const found = place(key, frame.with);
  const messages = frame.messages || [];
  if (request.recheckUpTo !== undefined) dropDeletedMeanwhile(found, request, frame);
  for (const message of messages) addMessage(found, message);
  if (kind === "after" && frame.more && messages.length) {
    askHistory(key, "after", { after: messages[messages.length - 1].seq }, request.recheckUpTo);
  } else if (kind === "before" || (kind === "newest" && !found.loaded)) {
    found.hasOlder = Boolean(frame.more) && messages.length > 0;
  }
  if (kind === "before") found.loadingOlder = false;
  found.loaded = true;
  return { found, kind };
}

/** Another sign-in: the places, unsent messages and rooms of the last account are not its. */
export function forgetAccount() {
  state.places.clear();
  state.publicRooms.clear();
  state.pending.clear();
  state.current = null;
}

/** After a reconnect: every place shown before asks for what came while the page was away,
 * and for what it shows again, so that a message deleted meanwhile leaves the page too (the
 * protocol tells only the sessions connected at the time of a `deleted`). */
export function fillGaps() {
  for (const found of state.places.values()) {
    if (found.gapFrom !== undefined) {
      // The oldest seq shown before the break (a page that came since, such as the login's
      // newest of general, may start later and must not hide the gap before it).
      const before = [...found.messages.keys()].filter((seq) => seq <= found.gapFrom);
      const first = before.length ? Math.min(...before) : found.gapFrom + 1;
      if (found.lastSeq >= first) askHistory(found.key, "after", { after: first - 1 }, found.gapFrom);
    }
    delete found.gapFrom;
  }
}

/** A page of a re-check covers seqs from its `after` up to its last message (or to the end
 * when no more follow): a message shown before the break that is in that span but not in
 * the page was deleted while the page was away (pages leave deleted messages out). */
function dropDeletedMeanwhile(found, request, frame) {
  const messages = frame.messages || [];
  const covered = frame.more && messages.length ? messages[messages.length - 1].seq : Infinity;
  const upTo = Math.min(covered, request.recheckUpTo);
  const kept = new Set(messages.map((message) => message.seq));
  for (const seq of [...found.messages.keys()]) {
    if (seq > request.after && seq <= upTo && !kept.has(seq)) found.messages.delete(seq);
  }
}

/** The connection is gone: no open request will be answered. */
export function connectionLost() {
  state.histories = [];
  for (const found of state.places.values()) {
    found.loadingOlder = false;
    // The last seq seen before the break: the gap to fill starts after it (a newer page
    // that comes first, such as the login's page of general, must not hide the gap).
    if (found.loaded && found.gapFrom === undefined) found.gapFrom = found.seen;
  }
}
