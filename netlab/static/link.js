// The WebSocket to the server and getting it back when it breaks: exponential backoff with
// full jitter (a random wait between 0 and a ceiling that doubles per failed attempt, up to
// 30 s, so a restarted server is not hit by every browser at the same instant), and at once
// when the browser says it is online again. What the connection is doing is always shown.
const FIRST_CEILING_MS = 1000;
const CEILING_CAP_MS = 30000;

const link = {
  ws: null,
  attempts: 0,      // failed attempts since the last good session: the ceiling's exponent
  timer: null,      // the next attempt
  ticker: null,     // the countdown shown
  stopped: false,   // the server ended this session on purpose (kicked, banned): no retry
  stoppedWhy: null, // what the page says of that, since the close may carry no reason
  handlers: null,   // {frame(frame), opened(), lost(why)}
};

// The visible state follows every second of a countdown; the live region that screen
// readers announce changes only when the state does.
function show(text, offerButton, announce = text) {
  document.getElementById("link-state").textContent = text;
  document.getElementById("connection").textContent = text;
  document.getElementById("reconnect-button").hidden = !offerButton;
  const live = document.getElementById("link-announce");
  if (announce !== null && live.textContent !== announce) live.textContent = announce;
}

/** Connect now and keep connecting: `handlers` get every frame and the losses. */
export function startLink(handlers) {
  link.handlers = handlers;
  window.addEventListener("online", () => {
    if (!link.stopped) connectNow();
  });
  // Offline, a socket may look open for minutes before TCP gives up: drop it now, so the
  // page says so at once and its messages wait for the return instead of vanishing.
  window.addEventListener("offline", () => link.ws?.close());
  document.getElementById("reconnect-button").addEventListener("click", resumeLink);
  connect();
}

function connectNow() {
  if (link.ws && link.ws.readyState <= WebSocket.OPEN) return; // connecting or connected already
  connect();
}

function connect() {
  clearTimeout(link.timer);
  clearInterval(link.ticker);
  show("connecting…", false);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  link.ws = ws;
  ws.addEventListener("open", () => show("connected", false));
  ws.addEventListener("message", (event) => link.handlers.frame(JSON.parse(event.data)));
  ws.addEventListener("close", (event) => {
    if (link.ws !== ws) return;
    let why = event.reason || (event.code === 1001 ? "the server is stopping" : "the connection was lost");
    if (!navigator.onLine) why = "offline";
    link.handlers.lost(why);
    if (link.stopped) show(`disconnected: ${link.stoppedWhy || why}`, true);
    else retryLater(why);
  });
}

function retryLater(why) {
  const ceiling = Math.min(CEILING_CAP_MS, FIRST_CEILING_MS * 2 ** link.attempts);
  link.attempts += 1;
  const due = Date.now() + Math.random() * ceiling;
  const tick = (announce) => {
    const seconds = Math.max(1, Math.ceil((due - Date.now()) / 1000));
    show(`${why}; reconnecting in ${seconds} s…`, true, announce);
  };
  tick(`${why}; reconnecting`);
  link.ticker = setInterval(() => tick(null), 1000);
  link.timer = setTimeout(connect, due - Date.now());
}

/** The session works (logged in): start the backoff over. */
export function linkWorks() {
  link.attempts = 0;
}

/** The server ended this session on purpose: say why and do not come back by ourselves. */
export function stopLink(why = null) {
  link.stopped = true;
  link.stoppedWhy = why; // said when the connection closes: the close itself may carry no reason
}

/** The user wants the connection (a button, or typing into the login form): now. */
export function resumeLink() {
  link.stopped = false;
  connectNow();
}

export function send(frame) {
  if (!link.ws || link.ws.readyState !== WebSocket.OPEN) return false;
  link.ws.send(JSON.stringify(frame));
  return true;
}
