// My account > Security > Security keys and passkeys: add (with the current password: the
// 10-minute window), rename, remove; and, on the forced setup, a key as the first factor.

import { api, busy, clearError, flashNext, followSession, messageFor, showError } from "./api.js";
import { renderCodes, wireCodeActions } from "./codes.js";
import { confirmAction } from "./dialog.js";
import * as webauthn from "./webauthn.js";

const UNSUPPORTED = "This browser can't use security keys or passkeys.";
const CANCELLED = "The security key didn't answer. Try again when it's ready.";

// The ceremony: options, the browser's dialog, the answer. Returns the API result.
async function addKey(name) {
  const options = await api("POST", "/api/me/passkeys/options");
  if (!options.ok) return options;
  let credential;
  try {
    credential = await webauthn.create(options.data.options);
  } catch (e) {
    return { ok: false, code: "webauthn", message: webauthn.cancelled(e) ? CANCELLED : UNSUPPORTED };
  }
  return api("POST", "/api/me/passkeys", { name, credential });
}

function showCodes(panel, codes, then) {
  renderCodes(panel.querySelector(".codes"), codes.map((code) => ({ code, used: false })));
  panel.hidden = false;
  wireCodeActions(panel);
  panel.querySelector("[id$='-finish']").addEventListener("click", then);
}

function messageOf(result) {
  return result.code === "webauthn" ? result.message : messageFor(result);
}

function manage(card) {
  const error = document.getElementById("passkeys-error");
  const form = document.getElementById("passkey-form");
  const add = document.getElementById("passkey-add");
  const reload = (text) => { flashNext(text); window.location.reload(); };
  add.addEventListener("click", () => {
    clearError(error);
    if (!webauthn.supported()) { showError(error, UNSUPPORTED); return; }
    form.hidden = false;
    add.hidden = true;
    document.getElementById("passkey-name").focus();
  });
  form.querySelector("[data-action='cancel-passkey']").addEventListener("click", () => {
    form.hidden = true;
    add.hidden = false;
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(error);
    const name = document.getElementById("passkey-name").value.trim();
    const password = document.getElementById("passkey-password").value;
    if (!name || !password) { showError(error, "Enter a name and your current password."); return; }
    await busy(event.submitter, async () => {
      const reauth = await api("POST", "/api/me/reauthenticate", { password });
      document.getElementById("passkey-password").value = "";
      const result = reauth.ok ? await addKey(name) : reauth;
      if (!result.ok) {
        if (!followSession(result)) showError(error, messageOf(result));
        return;
      }
      form.hidden = true;
      if (result.data.recovery_codes) {
        showCodes(document.getElementById("passkey-codes"), result.data.recovery_codes,
          () => reload("Security key added. 2FA is on."));
      } else {
        reload("Security key added.");
      }
    });
  });

  const removeForm = document.getElementById("passkey-remove-password");
  let removing = null;
  const remove = async (id) => {
    const result = await api("DELETE", `/api/me/passkeys/${encodeURIComponent(id)}`, {});
    if (result.ok) { reload("Security key removed."); return true; }
    if (result.code === "reauthentication_required") return false;
    if (!followSession(result)) {
      showError(error, messageFor(result, {
        two_factor_required: "Your administrator requires 2FA: add another key or an authenticator app before removing your last key.",
      }));
    }
    return true;
  };
  removeForm.querySelector("[data-action='cancel-remove']").addEventListener("click", () => {
    removeForm.hidden = true;
  });
  removeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(error);
    const password = document.getElementById("remove-password").value;
    await busy(event.submitter, async () => {
      const reauth = await api("POST", "/api/me/reauthenticate", { password });
      document.getElementById("remove-password").value = "";
      if (!reauth.ok) { showError(error, messageFor(reauth, { invalid_credentials: "Wrong password. Try again." })); return; }
      await remove(removing);
    });
  });

  for (const row of card.querySelectorAll("li.key")) {
    row.querySelector("[data-action='remove-key']").addEventListener("click", async () => {
      clearError(error);
      const ok = await confirmAction({
        title: "Remove security key",
        text: `Remove "${row.dataset.name}"? You won't be able to log in with it any more.`,
        confirm: "Remove", danger: true,
      });
      if (!ok) return;
      removing = row.dataset.id;
      if (!(await remove(removing))) {
        document.getElementById("remove-key-name").textContent = row.dataset.name;
        removeForm.hidden = false;
        document.getElementById("remove-password").focus();
      }
    });
    row.querySelector("[data-action='rename-key']").addEventListener("click", async () => {
      clearError(error);
      const name = window.prompt("New name for this key", row.dataset.name);
      if (name === null || !name.trim()) return;
      const result = await api("PATCH", `/api/me/passkeys/${encodeURIComponent(row.dataset.id)}`, { name: name.trim() });
      if (result.ok) { reload("Security key renamed."); return; }
      if (!followSession(result)) showError(error, messageFor(result));
    });
  }
}

// The forced setup: a key instead of an app (the login's window is open already).
function forced(section) {
  const button = document.getElementById("forced-passkey-add");
  const error = document.getElementById("forced-passkey-error");
  button.addEventListener("click", async () => {
    clearError(error);
    if (!webauthn.supported()) { showError(error, UNSUPPORTED); return; }
    await busy(button, async () => {
      const result = await addKey("Security key");
      if (!result.ok) {
        if (!followSession(result)) showError(error, messageOf(result));
        return;
      }
      section.hidden = true;
      const steps = document.getElementById("step-codes");
      for (const step of document.querySelectorAll("#configure .step")) step.hidden = true;
      renderCodes(document.getElementById("setup-codes"),
        (result.data.recovery_codes || []).map((code) => ({ code, used: false })));
      steps.hidden = false;
    });
  });
}

const card = document.getElementById("passkeys");
if (card) manage(card);
const forcedSection = document.getElementById("forced-passkey");
if (forcedSection) forced(forcedSection);
