// Errors in human sentences: a copy of the terminal client's (netlab/client/words.py), so
// both clients say the same (tests/test_web_page.py keeps the two equal).
export const ERROR_SENTENCES = {
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
export const AUTH_FAILURES = new Set(["invalid_username", "invalid_password", "username_taken", "bad_credentials"]);

/** The sentence that tells a person what an `error` frame means. */
export function sentence(frame) {
  let text = ERROR_SENTENCES[frame.code] || frame.message || frame.code;
  if (TOLD_BY_THE_SERVER.has(frame.code) && frame.message) text += ` (${frame.message})`;
  return text;
}
