// Logging in, registering (the password asked twice), logging in again by itself after a
// reconnect, and changing the password. The password is kept in this tab's memory only
// (never in a URL, a cookie, localStorage or sessionStorage): a reload asks for it again.
import { linkWorks, send, stopLink } from "./link.js";
import { forgetPresence } from "./presence.js";
import { expectRoomList } from "./rooms.js";
import { resendPending } from "./sending.js";
import { show } from "./sidebar.js";
import { $, expectLoginHistory, forgetAccount, newId, state } from "./state.js";
import { AUTH_FAILURES, sentence } from "./words.js";

let registering = false;
let loggingIn = false;  // a login or register is out: its error goes to the login form
let passwordChange = null; // {id, password}: the request out, and the password it sets

function setMode(toRegister) {
  registering = toRegister;
  $("again-label").hidden = !toRegister;
  $("password-again").required = toRegister;
  $("password").autocomplete = toRegister ? "new-password" : "current-password";
  $("login-button").textContent = toRegister ? "Register" : "Log in";
  $("mode-button").textContent = toRegister ? "Have an account? Log in" : "New here? Register";
  $("login-error").textContent = "";
}

function submitLogin(event) {
  event.preventDefault(); // nothing is posted anywhere: the password goes only into the WebSocket
  const username = $("username").value.trim();
  const password = $("password").value;
  if (registering && password !== $("password-again").value) {
    $("login-error").textContent = "the two passwords differ";
    return;
  }
  $("login-error").textContent = "";
  if (!authenticate(registering ? "register" : "login", username, password)) {
    $("login-error").textContent = "not connected";
  }
}

function authenticate(type, username, password) {
  if (!send({ type, username, password, protocol: 2 })) return false;
  state.credentials = { username, password };
  loggingIn = true;
  expectLoginHistory();
  return true;
}

export function onWelcome(frame) {
  if (!(frame.versions || []).includes(2)) {
    // Said when the connection closes (a line written here now would be overwritten then).
    stopLink("this server is too old for the browser client (no protocol version 2)");
    return;
  }
  if (state.me && state.credentials) {
    authenticate("login", state.credentials.username, state.credentials.password); // a reconnect
  } else {
    $("login-button").disabled = false;
  }
}

export function onOk(frame) {
  if (frame.op === "password") return passwordChanged();
  // Not asked for any more (the user logged out while it was on its way): `bye` follows.
  if ((frame.op !== "login" && frame.op !== "register") || !loggingIn) return;
  loggingIn = false;
  linkWorks();
  forgetPresence();
  expectRoomList();
  const again = state.me !== null && state.me === frame.username;
  if (!again) { // a new sign-in (another account, perhaps): nothing of the last one stays
    forgetAccount();
    forgetTyping();
  }
  state.me = frame.username;
  $("password").value = "";
  $("password-again").value = "";
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  $("me").textContent = `signed in as ${state.me}`;
  $("status").textContent = ""; // "the server is stopping" or a kick was about the session before
  if (again) {
    show(state.current); // the conversation stays; gaps are filled once `rooms` has every last seq
    resendPending();
  } else {
    show("#general");
    $("draft").focus();
  }
}

/** An `error` for logging in or the password; false when it is not one of those. */
export function authError(frame) {
  if (passwordChange && frame.id === passwordChange.id) {
    passwordChange = null;
    $("password-result").textContent = `not changed: ${sentence(frame)}`;
    return true;
  }
  if (!loggingIn || !(AUTH_FAILURES.has(frame.code) || frame.code === "rate_limited" || frame.code === "banned")) {
    return false;
  }
  loggingIn = false;
  if (state.me) backToLogin(); // logging in again failed (the password changed elsewhere, say)
  $("login-error").textContent = sentence(frame);
  return true;
}

/** Log out: the session ends (`quit`) and the password is forgotten; the page reconnects for the next login. */
function logOut() {
  send({ type: "quit" });
  loggingIn = false;
  backToLogin();
  forgetAccount();
  forgetTyping();
  $("login-error").textContent = "";
  $("login-button").disabled = true; // until the next connection's welcome
}

/** What the last account typed and did not send (a draft, a password half typed) and the
 * answers it got: the next person at this computer must not find them. */
function forgetTyping() {
  for (const id of ["draft", "old-password", "new-password", "new-password-again"]) $(id).value = "";
  for (const id of ["password-result", "send-error", "status"]) $(id).textContent = "";
  for (const details of $("chat-view").querySelectorAll("details")) details.open = false;
}

function backToLogin() {
  state.me = null;
  state.credentials = null;
  $("chat-view").hidden = true;
  $("login-view").hidden = false;
  setMode(false); // who was signed in has an account: logging in is what comes next
  $("login-button").disabled = false;
  $("username").focus();
}

function submitPassword(event) {
  event.preventDefault();
  const password = $("old-password").value;
  const next = $("new-password").value;
  if (next !== $("new-password-again").value) {
    $("password-result").textContent = "the two new passwords differ";
    return;
  }
  passwordChange = { id: newId("p"), password: next };
  if (!send({ type: "password", id: passwordChange.id, password, new_password: next })) {
    passwordChange = null;
    $("password-result").textContent = "not connected: the password was not changed";
    return;
  }
  $("password-result").textContent = "changing…";
}

function passwordChanged() {
  if (state.credentials && passwordChange) state.credentials.password = passwordChange.password;
  passwordChange = null;
  for (const id of ["old-password", "new-password", "new-password-again"]) $(id).value = "";
  $("password-result").textContent = "password changed";
}

export function wireAccount() {
  $("login-form").addEventListener("submit", submitLogin);
  $("mode-button").addEventListener("click", () => setMode(!registering));
  $("password-form").addEventListener("submit", submitPassword);
  $("logout-button").addEventListener("click", logOut);
  setMode(false);
}
