"""A real browser for the page's tests: Debian's headless Chromium driven by Selenium.

The driver's path is given explicitly (`/usr/bin/chromedriver`, the same source package as
`/usr/bin/chromium`, so their versions match) and Selenium Manager is never asked, so nothing
is downloaded. Outside CI a machine without them skips the browser tests with the command that
installs them; in CI (`NETLAB_CI=1`, set by `.ci/run`, which installs them) a missing browser is
a failure, never a skip.

`ChatPage` is the page as a user sees it: it finds things by the ids and roles of
netlab/static/index.html, types and clicks as a person would, and waits on what the page shows
(never on time), so a test reads as the story of a user.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from procs import WAIT

CHROMIUM = Path(os.environ.get("NETLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("NETLAB_CHROMEDRIVER", "/usr/bin/chromedriver"))
INSTALL_HINT = "apt-get install chromium chromium-driver"

# Chromium's own traffic (updates, sync, safe browsing) is refused on an offline machine and
# slows every start; the page needs none of it.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-default-apps", "--disable-extensions", "--mute-audio",
)

NOTIFICATIONS_SEEN = """
window.notificationsShown = [];
window.Notification = class extends window.Notification {
  constructor(title, options) {
    super(title, options);
    window.notificationsShown.push([title, options.body]);
    // Also where a second tab of the origin reads it while this one stays hidden.
    localStorage.setItem("notificationsShown", JSON.stringify(window.notificationsShown));
  }
};
"""

# Every element with text of its own whose colour on its background falls below WCAG AA's
# 4.5:1 (the background is the nearest opaque one up the tree).
LOW_CONTRAST = """
const channels = (colour) => colour.match(/[\\d.]+/g).map(Number);
const luminance = (rgb) => rgb.slice(0, 3).map((v) => v / 255)
  .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
  .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
function background(element) {
  for (; element; element = element.parentElement) {
    const rgba = channels(getComputedStyle(element).backgroundColor);
    if (rgba.length < 4 || rgba[3] > 0) return rgba;
  }
  return [255, 255, 255];
}
const low = [];
for (const element of document.querySelectorAll("body *")) {
  const own = [...element.childNodes].filter((n) => n.nodeType === 3);
  const text = own.map((n) => n.textContent).join("").trim();
  if (!text || !element.getClientRects().length) continue;
  const [a, b] = [luminance(channels(getComputedStyle(element).color)), luminance(background(element))];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const where = `${element.tagName}#${element.id}.${element.className}`;
  if (ratio < 4.5) low.push(`${where} "${text.slice(0, 20)}": ${ratio.toFixed(2)}`);
}
return low;
"""

PERMISSION_ASKED = """
window.permissionRequests = 0;
const askPermission = Notification.requestPermission.bind(Notification);
Notification.requestPermission = (...args) => {
  window.permissionRequests += 1;
  return askPermission(...args);
};
"""

DESKTOP = (1280, 800)
PHONE = (390, 844)


def require_browser() -> None:
    """Skip (outside CI) or fail (in CI) when the browser or its driver is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: {INSTALL_HINT}"
    if os.environ.get("NETLAB_CI"):
        pytest.fail(message)
    pytest.skip(message)


def start_browser(user_data: Path, size: tuple[int, int] = DESKTOP):
    """A new headless Chromium with an empty profile in `user_data`."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data}")
    options.add_argument(f"--window-size={size[0]},{size[1]}")
    # The browser's console, read by tests that look for a CSP violation.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    return driver


def screenshots_dir() -> Path:
    """Where the tests leave screenshots for a person to look at (ignored by git)."""
    folder = Path(__file__).resolve().parent.parent / "test-screenshots"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def browser(tmp_path: Path):
    """Start browsers (`browser()` or `browser(size=PHONE)`); all are quit at teardown."""
    started = []

    def start(size: tuple[int, int] = DESKTOP):
        driver = start_browser(tmp_path / f"profile-{len(started)}", size)
        started.append(driver)
        return driver

    yield start
    for driver in started:
        driver.quit()
    for index in range(len(started)):
        shutil.rmtree(tmp_path / f"profile-{index}", ignore_errors=True)


class ChatPage:
    """One browser tab on the chat page, driven the way a person would use it."""

    def __init__(self, driver, url: str) -> None:
        self.driver = driver
        self.url = url

    # ---- finding and waiting ----------------------------------------------------------

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(self, condition: Callable[[Any], Any], what: str, timeout: float = WAIT):
        """Wait until `condition(driver)` is truthy; on timeout say what was awaited."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,)).until(
            condition, f"the page never showed {what}")

    def wait_text(self, css: str, text: str, timeout: float = WAIT):
        """Wait until the element `css` contains `text`; returns its text."""
        return self.wait(lambda _: text in self.find(css).text and self.find(css).text,
                         f"{text!r} in {css}", timeout)

    # ---- logging in -------------------------------------------------------------------

    def open(self) -> ChatPage:
        self.driver.get(self.url)
        self.wait(lambda _: self.find("#login-button").is_enabled(), "an enabled login button")
        return self

    def register(self, username: str, password: str) -> ChatPage:
        self.find("#mode-button").click()
        self.fill_login(username, password, again=password)
        return self.wait_signed_in()

    def login(self, username: str, password: str) -> ChatPage:
        self.fill_login(username, password)
        return self.wait_signed_in()

    def fill_login(self, username: str, password: str, again: str | None = None) -> None:
        self.find("#username").clear()
        self.find("#username").send_keys(username)
        self.find("#password").send_keys(password)
        if again is not None:
            self.find("#password-again").send_keys(again)
        self.find("#login-button").click()

    def wait_signed_in(self) -> ChatPage:
        self.wait(lambda _: self.find("#chat-view").is_displayed(), "the chat after logging in")
        return self

    # ---- the conversation -------------------------------------------------------------

    def say(self, text: str) -> None:
        """Type `text` (newlines as Shift+Enter) and press Enter."""
        from selenium.webdriver.common.keys import Keys

        draft = self.find("#draft")
        for index, line in enumerate(text.split("\n")):
            if index:
                draft.send_keys(Keys.SHIFT, Keys.ENTER)
            draft.send_keys(line)
        draft.send_keys(Keys.ENTER)

    def message_texts(self) -> list[str]:
        """The conversation shown, one string per message line (events excluded)."""
        return [item.text for item in self.find_all("#messages li[data-seq]")]

    def wait_message(self, text: str, timeout: float = WAIT) -> None:
        self.wait(lambda _: any(text in line for line in self.message_texts()),
                  f"a message with {text!r}", timeout)

    def show(self, name: str) -> None:
        """Click a room (`#name`) or a conversation (`name`) in the sidebar (again if the page
        redrew the sidebar between finding the button and clicking it)."""
        self.wait(lambda _: self.sidebar_button(name).click() or True, f"{name} clicked")
        self.wait(lambda _: self.find("#place-name").text.startswith(name), f"{name} opened")

    def sidebar_button(self, name: str):
        for button in self.find_all("#sidebar li button"):
            label = button.find_elements("css selector", "span")[0].text
            if label == name:
                return button
        raise AssertionError(f"{name} is not in the sidebar")

    def unread(self, name: str) -> int:
        """The unread count the sidebar shows for `name` (0 when it shows none)."""
        badges = self.sidebar_button(name).find_elements("css selector", ".unread")
        return int(badges[0].text) if badges else 0

    def emulate(self, size: tuple[int, int], phone: bool = False, loaded: bool = True) -> ChatPage:
        """A viewport of exactly `size` (width, height; a headless window is at least 500 px
        wide): DevTools' device metrics. As a phone's, `phone` also makes the browser lay the
        page out by its viewport meta tag, as a phone's browser does. On a `loaded` page, the
        call returns once the page has the new size (before `open`, a blank page is laid out
        980 px wide, as a phone's browser lays out a page without the meta tag)."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": phone})
        if loaded:
            self.wait(lambda _: self.driver.execute_script("return [innerWidth, innerHeight]") == list(size),
                      f"a viewport of {size[0]}x{size[1]} px")
        return self

    def emulate_phone(self, size: tuple[int, int] = PHONE) -> ChatPage:
        """Before `open`: a phone's viewport for the page about to load."""
        return self.emulate(size, phone=True, loaded=False)

    def low_contrast(self) -> list[str]:
        """The texts shown now whose contrast is below WCAG AA's 4.5:1, with their ratios."""
        return self.driver.execute_script(LOW_CONTRAST)

    def tab_through(self, presses: int = 80) -> list[str]:
        """Press Tab from the top until the focus comes round again (at most `presses` times);
        each focused element as `tag#id text` (see `focused`)."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        self.driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
        seen = []
        for _ in range(presses):
            ActionChains(self.driver).send_keys(Keys.TAB).perform()
            now = self.focused()
            if seen and now == seen[0]:
                break
            seen.append(now)
        return seen

    def focused(self) -> str:
        """The element with the keyboard focus, as `tag#id its first line of text`."""
        return self.driver.execute_script(
            "const e = document.activeElement;"
            "return `${e.tagName.toLowerCase()}#${e.id} ${(e.innerText || '').trim().split('\\n')[0]}`")

    def press_tab_until(self, description: str, presses: int = 80) -> None:
        """Tab until the focused element is described as `description` (see tab_through)."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        for _ in range(presses):
            ActionChains(self.driver).send_keys(Keys.TAB).perform()
            if self.focused() == description:
                return
        raise AssertionError(f"Tab never reached {description}")

    def keys(self, *keys: str) -> None:
        """Type into whatever has the focus, as a keyboard does."""
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(*keys).perform()

    def screenshot(self, name: str) -> Path:
        path = screenshots_dir() / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def console_errors(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    # ---- the connection ---------------------------------------------------------------

    def link_state(self) -> str:
        """What the page says its connection is doing ("connected", "… reconnecting in 4 s…")."""
        return self.find("#link-state").text

    def wait_connected(self, timeout: float = WAIT) -> None:
        self.wait(lambda _: self.link_state() == "connected", "the connection back", timeout)

    def set_offline(self, offline: bool) -> None:
        """The browser's network off or on (DevTools), as a laptop losing its Wi-Fi."""
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})

    def draft(self) -> str:
        return self.find("#draft").get_property("value")

    # ---- notifications ----------------------------------------------------------------

    def allow_notifications(self) -> None:
        """Before `open`: grant the page notifications (as a user would once) and record each
        one it shows (a wrapper around `Notification` put in by DevTools, which the CSP allows)."""
        grant = {"origin": self.url.rstrip("/"), "permissions": ["notifications"]}
        self.driver.execute_cdp_cmd("Browser.grantPermissions", grant)
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": NOTIFICATIONS_SEEN})

    def count_permission_requests(self) -> None:
        """Before `open`: count the page's calls of `Notification.requestPermission`."""
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PERMISSION_ASKED})

    def permission_requests(self) -> int:
        return self.driver.execute_script("return window.permissionRequests")

    def notifications(self) -> list[list[str]]:
        """[title, body] of each notification the page showed."""
        return self.driver.execute_script("return window.notificationsShown")

    def notifications_seen_from_another_tab(self) -> list[list[str]]:
        """As `notifications`, read in another tab of the page's origin (a second copy of the
        page, not logged in), so the chat's tab stays hidden while the test waits."""
        return self.driver.execute_script(
            "return JSON.parse(localStorage.getItem('notificationsShown') || '[]')")

    # ---- managing rooms (the sidebar's forms, the room's settings) --------------------

    def open_details(self, css: str) -> None:
        """Unfold a <details> section (by its summary, as a user would) if it is folded."""
        details = self.find(css)
        if details.get_attribute("open") is None:
            details.find_element("css selector", "summary").click()

    def create_room(self, name: str, private: bool = False) -> None:
        self.ask_create_room(name, private)
        self.wait(lambda _: self.find("#place-name").text == f"#{name}", f"#{name} opened")

    def ask_create_room(self, name: str, private: bool = False) -> None:
        """Fill and send the create form (without waiting: the server may refuse)."""
        self.open_details("#create-rooms")
        self.find("#new-room").clear()
        self.find("#new-room").send_keys(name)
        if private != self.find("#new-room-private").is_selected():
            self.find("#new-room-private").click()
        self.find("#create-button").click()

    def public_rooms(self) -> list[str]:
        """The rooms the join list offers (opening it asks the server again)."""
        self.open_details("#join-rooms")
        self.wait(lambda _: self.find("#public-rooms").text != "looking…", "the public rooms listed")
        return [text.removeprefix("Join ") for text in self.texts("#public-rooms button")]

    def texts(self, css: str) -> list[str]:
        """The text of every element `css` finds, read at one instant (lists are redrawn whole)."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map((e) => e.innerText)", css)

    def join_room(self, name: str) -> None:
        self.open_details("#join-rooms")
        self.wait(lambda _: any(b.text == f"Join #{name}" for b in self.find_all("#public-rooms button")),
                  f"#{name} in the join list")
        next(b for b in self.find_all("#public-rooms button") if b.text == f"Join #{name}").click()
        self.wait(lambda _: self.find("#place-name").text == f"#{name}", f"#{name} opened")

    def room_settings(self) -> None:
        self.open_details("#room-actions")

    def invite(self, username: str) -> None:
        self.room_settings()
        self.find("#invite-user").send_keys(username)
        self.find("#invite-button").click()
        self.wait_text("#status", f"invited {username}")

    def set_topic(self, text: str) -> None:
        self.room_settings()
        self.find("#topic-text").clear()
        self.find("#topic-text").send_keys(text)
        self.find("#topic-button").click()
        self.wait_text("#place-topic", text)

    def leave_room(self) -> None:
        self.room_settings()
        self.find("#leave-button").click()
        self.wait(lambda _: self.find("#place-name").text == "#general", "general after leaving")

    def message_user(self, username: str) -> None:
        self.ask_message_user(username)
        self.wait(lambda _: self.find("#place-name").text.lower().startswith(username.lower()),
                  f"the conversation with {username}")

    def ask_message_user(self, username: str) -> None:
        """Open a conversation from the form (without waiting: there may be nobody of that name)."""
        self.open_details("#start-dm")
        self.find("#dm-user").send_keys(username)
        self.find("#dm-button").click()

    def sidebar_names(self) -> list[str]:
        return self.texts("#sidebar li button[data-key] > span:first-child")

    # ---- the conversation's own controls ----------------------------------------------

    def delete_message(self, text: str) -> None:
        """Press Delete on your own message holding `text`."""
        for item in self.find_all("#messages li.own"):
            if text in item.text:
                item.find_element("css selector", "button.delete").click()
                return
        raise AssertionError(f"no own message with {text!r}")

    def presence(self) -> list[str]:
        """Who the page says is online in the place shown."""
        return [item.text for item in self.find_all("#presence li")]

    def change_password(self, old: str, new: str, again: str | None = None) -> str:
        """Fill the password form; returns what the page answered."""
        self.open_details("#account")
        fields = {"#old-password": old, "#new-password": new, "#new-password-again": again or new}
        for css, value in fields.items():
            self.find(css).clear()
            self.find(css).send_keys(value)
        self.find("#password-button").click()
        self.wait(lambda _: self.find("#password-result").text not in ("", "changing…"),
                  "the password's answer")
        return self.find("#password-result").text
