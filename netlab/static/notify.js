// A browser notification when someone @mentions you while the tab is hidden. Permission is
// asked only when the user presses the button (browsers ignore or punish a request on load).
import { $ } from "./state.js";

const supported = "Notification" in window;

export function wireNotifications() {
  const button = $("notify-button");
  button.hidden = !supported || Notification.permission !== "default";
  button.addEventListener("click", async () => {
    const answer = await Notification.requestPermission();
    button.hidden = answer !== "default";
    $("status").textContent = answer === "granted" ? "you will be notified of mentions while this tab is hidden"
      : "notifications are off (the browser's site settings can turn them on)";
  });
}

/** `open` shows the place when the notification is clicked. */
export function notifyMention(message, where, open) {
  if (!supported || document.visibilityState !== "hidden" || Notification.permission !== "granted") return;
  let note;
  try {
    note = new Notification(`${message.from} mentioned you in ${where}`, { body: message.text, tag: where });
  } catch {
    return; // Chrome on Android allows them only from a service worker: the highlight must do
  }
  note.addEventListener("click", () => {
    window.focus();
    open();
  });
}
