// My account > Security: Configure 2FA (password, QR code or setup key, 6-digit code, recovery
// codes), the forced setup of a required user, and Disable 2FA.

import {
  api, busy, clearError, flashNext, followSession, messageFor, onPasswordConfirmed, showError,
} from "./api.js";
import { formatLeft, serverNow } from "./clock.js";
import { renderCodes, wireCodeActions } from "./codes.js";

const card = document.getElementById("two-factor");
const forced = card.dataset.forced === "true";
const overview = document.getElementById("overview");
const flow = document.getElementById("configure");
const error = document.getElementById("configure-error");
const steps = {
  password: document.getElementById("step-password"),
  scan: document.getElementById("step-scan"),
  codes: document.getElementById("step-codes"),
};
const passwordInput = document.getElementById("configure-password");
const codeInput = document.getElementById("setup-code");
const timeLeft = document.getElementById("time-left");
const keyButton = document.getElementById("show-key");
const manualKey = document.getElementById("manual-key");
let timer = null;

function show(name) {
  const order = Object.keys(steps);
  for (const [key, element] of Object.entries(steps)) element.hidden = key !== name;
  for (const item of flow.querySelectorAll(".steps li")) {
    const index = order.indexOf(item.dataset.step);
    item.classList.toggle("current", item.dataset.step === name);
    item.classList.toggle("done", index < order.indexOf(name));
    if (item.dataset.step === name) item.setAttribute("aria-current", "step");
    else item.removeAttribute("aria-current");
  }
}

function stopTimer() {
  if (timer !== null) clearInterval(timer);
  timer = null;
}

function startTimer(expiresAt) {
  stopTimer();
  const end = Date.parse(expiresAt);
  const tick = () => {
    const left = end - serverNow();
    timeLeft.textContent = formatLeft(left);
    if (left <= 0) expired();
  };
  tick();
  timer = setInterval(tick, 1000);
}

function askPassword(message) {
  stopTimer();
  if (message) showError(error, message);
  else clearError(error);
  passwordInput.value = "";
  show("password");
  passwordInput.focus();
}

function expired() {
  askPassword(messageFor({ code: "setup_window_expired" }));
}

function open() {
  if (!flow.hidden && !steps.password.hidden) return;
  if (overview) overview.hidden = true;
  flow.hidden = false;
  askPassword("");
}

function close() {
  stopTimer();
  clearError(error);
  flow.hidden = true;
  if (overview) overview.hidden = false;
  history.replaceState(null, "", location.pathname);
}

async function beginSetup() {
  const result = await api("POST", "/api/me/2fa/setup");
  if (!result.ok) {
    if (followSession(result)) return;
    if (result.code === "reauthentication_required") {
      askPassword(forced ? "" : messageFor(result));
    } else {
      askPassword(messageFor(result));
    }
    return;
  }
  const { setup_key: setupKey, qr_svg: svg, expires_at: expiresAt } = result.data;
  document.getElementById("qr").src = `data:image/svg+xml;base64,${btoa(svg)}`;
  document.getElementById("setup-key").textContent = setupKey;
  manualKey.hidden = true;
  keyButton.setAttribute("aria-expanded", "false");
  codeInput.value = "";
  clearError(error);
  show("scan");
  startTimer(expiresAt);
  codeInput.focus();
}

onPasswordConfirmed(steps.password, passwordInput, error, () => beginSetup());

keyButton.addEventListener("click", () => {
  const opening = manualKey.hidden;
  manualKey.hidden = !opening;
  keyButton.setAttribute("aria-expanded", String(opening));
});

document.getElementById("verify-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError(error);
  const code = codeInput.value.replace(/\s/g, "");
  if (!/^\d{6}$/.test(code)) {
    showError(error, "Enter the 6-digit code from your authenticator app.");
    codeInput.focus();
    return;
  }
  const result = await busy(event.submitter, () => api("POST", "/api/me/2fa/setup/verify", { code }));
  if (result.ok) {
    stopTimer();
    const status = document.getElementById("tfa-status");
    status.textContent = "On";
    status.className = "pill pill-on";
    renderCodes(document.getElementById("setup-codes"),
      result.data.recovery_codes.map((value) => ({ code: value, used: false })));
    show("codes");
    document.getElementById("setup-codes").scrollIntoView({ block: "center" });
    return;
  }
  if (followSession(result)) return;
  if (result.code === "setup_window_expired" || result.code === "reauthentication_required") {
    askPassword(messageFor({ code: "setup_window_expired" }));
    return;
  }
  if (result.code === "no_setup_in_progress") {
    await beginSetup();
    return;
  }
  codeInput.value = "";
  showError(error, messageFor(result, {
    invalid_code: "That code didn't work. Enter the current 6-digit code shown in your authenticator app.",
  }));
  codeInput.focus();
});

document.getElementById("setup-finish").addEventListener("click", () => {
  flashNext("Two-factor authentication is on. You'll enter a code from your app at each login.");
  window.location.assign(forced ? "/" : "/account/security");
});

for (const button of document.querySelectorAll("[data-action='cancel-configure']")) {
  button.addEventListener("click", close);
}
document.getElementById("configure-start")?.addEventListener("click", open);

function openFromHash() {
  if (location.hash === "#configure" && document.getElementById("configure-start")) open();
}
window.addEventListener("hashchange", openFromHash);

wireCodeActions(flow);

// Disable 2FA: only offered when the administrator does not require it.
const disableForm = document.getElementById("disable-form");
if (disableForm) {
  const disableError = document.getElementById("disable-error");
  const disablePassword = document.getElementById("disable-password");
  document.getElementById("disable-start").addEventListener("click", () => {
    overview.hidden = true;
    disableForm.hidden = false;
    disablePassword.focus();
  });
  disableForm.querySelector("[data-action='cancel-disable']").addEventListener("click", () => {
    disableForm.hidden = true;
    overview.hidden = false;
    clearError(disableError);
  });
  onPasswordConfirmed(disableForm, disablePassword, disableError, async () => {
    const result = await api("POST", "/api/me/2fa/disable");
    if (result.ok) {
      flashNext("Two-factor authentication is off.");
      window.location.assign("/account/security");
    }
    return result;
  });
}

if (forced) {
  flow.hidden = false;
  beginSetup();
} else {
  openFromHash();
}
