// Every logged-in page: Log out, the message left by the previous page, and the live channel
// (/ws) that shows or hides the 2FA notification bar and shows security notices.

import { api } from "./api.js";
import { toast } from "./toast.js";

const MAX_BACKOFF_MS = 30000;

function connectLive(banner) {
  let failures = 0;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws`);
    socket.addEventListener("open", () => { failures = 0; });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "banner") {
        banner.hidden = !message.show;
        document.dispatchEvent(new CustomEvent("twofa:banner", { detail: message }));
      } else if (message.type === "notice" && message.message) {
        toast(message.message);
      }
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4401) {
        // The session ended (logged out in another tab, expired): nothing here works any more.
        window.location.assign("/login");
        return;
      }
      // Exponential backoff with jitter, so a restarted server is not hit by every page at once.
      const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** failures) * (0.5 + Math.random() / 2);
      failures += 1;
      setTimeout(open, delay);
    });
  };
  open();
}

function init() {
  for (const button of document.querySelectorAll("[data-action='logout']")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      await api("POST", "/api/logout");
      window.location.assign("/login");
    });
  }
  const flash = sessionStorage.getItem("flash");
  if (flash) {
    sessionStorage.removeItem("flash");
    toast(flash);
  }
  const banner = document.getElementById("twofa-banner");
  if (banner) connectLive(banner);
}

init();
