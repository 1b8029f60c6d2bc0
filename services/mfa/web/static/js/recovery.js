// My account > Security > Show recovery codes (view, Download, Copy, Regenerate codes), and the
// forced regeneration after the last recovery code was used at login.

import {
  api, busy, clearError, flashNext, followSession, messageFor, onPasswordConfirmed, showError,
} from "./api.js";
import { renderCodes, wireCodeActions } from "./codes.js";
import { confirmAction } from "./dialog.js";
import { toast } from "./toast.js";

const card = document.getElementById("recovery");
const error = document.getElementById("codes-error");

function fresh(codes) {
  return codes.map((code) => ({ code, used: false }));
}

function forcedPage() {
  const intro = document.getElementById("regenerate-intro");
  const newSet = document.getElementById("new-set");
  const passwordForm = document.getElementById("forced-password");
  const passwordInput = document.getElementById("forced-password-input");
  const shown = (result) => {
    if (!result.ok) return result;
    renderCodes(document.getElementById("forced-codes"), fresh(result.data.recovery_codes));
    intro.hidden = true;
    passwordForm.hidden = true;
    newSet.hidden = false;
    return result;
  };
  const regenerate = async () => shown(await api("POST", "/api/me/2fa/recovery-codes/regenerate"));
  document.getElementById("forced-regenerate").addEventListener("click", async (event) => {
    clearError(error);
    const result = await busy(event.currentTarget, regenerate);
    if (result.ok || followSession(result)) return;
    if (result.code === "reauthentication_required") {
      // The 10-minute window of the login ran out: the password opens a new one.
      intro.hidden = true;
      passwordForm.hidden = false;
      passwordInput.focus();
      return;
    }
    showError(error, messageFor(result));
  });
  onPasswordConfirmed(passwordForm, passwordInput, error, regenerate);
  document.getElementById("forced-finish").addEventListener("click", () => {
    flashNext("New recovery codes are ready. Your old codes no longer work.");
    window.location.assign("/");
  });
  wireCodeActions(card);
}

function viewPage() {
  const passwordForm = document.getElementById("codes-password");
  if (!passwordForm) return; // 2FA is off: nothing to show
  const view = document.getElementById("codes-view");
  const list = document.getElementById("current-codes");
  const summary = document.getElementById("codes-summary");
  const passwordInput = document.getElementById("codes-password-input");

  const showCodes = (codes) => {
    renderCodes(list, codes);
    const left = codes.filter((item) => !item.used).length;
    summary.textContent = `${left} of ${codes.length} left`;
    passwordForm.hidden = true;
    view.hidden = false;
  };
  const askPassword = (message) => {
    view.hidden = true;
    passwordForm.hidden = false;
    if (message) showError(error, message);
    passwordInput.focus();
  };
  const load = async () => {
    const result = await api("GET", "/api/me/2fa/recovery-codes");
    if (result.ok) {
      clearError(error);
      showCodes(result.data.codes);
    } else if (!followSession(result)) {
      askPassword(result.code === "reauthentication_required" ? "" : messageFor(result));
    }
  };

  onPasswordConfirmed(passwordForm, passwordInput, error, () => load());

  document.getElementById("regenerate").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    const sure = await confirmAction({
      title: "Regenerate recovery codes?",
      text: "This creates a new set of 10 codes and invalidates all your existing codes immediately.",
      confirm: "Regenerate codes",
      danger: true,
    });
    if (!sure) return;
    clearError(error);
    const result = await busy(button, () => api("POST", "/api/me/2fa/recovery-codes/regenerate"));
    if (!result.ok) {
      if (followSession(result)) return;
      if (result.code === "reauthentication_required") askPassword(messageFor(result));
      else showError(error, messageFor(result));
      return;
    }
    showCodes(fresh(result.data.recovery_codes));
    toast("New recovery codes generated. Your old codes no longer work.");
  });

  wireCodeActions(card);
  if (card.dataset.window === "open") load();
  else askPassword("");
}

if (card.dataset.forced === "true") forcedPage();
else viewPage();
