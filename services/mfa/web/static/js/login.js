// The login page (email and password) and its second step (6-digit or 8-digit recovery code).

import { api, busy, clearError, followSession, messageFor, showError } from "./api.js";
import * as webauthn from "./webauthn.js";

function go(next) {
  window.location.assign(next === "second_factor" ? "/login/code" : "/");
}

function loginForm(form) {
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(error);
    const email = form.email.value.trim();
    const password = form.password.value;
    if (!email || !password) {
      showError(error, "Enter your email and password.");
      return;
    }
    const result = await busy(form.querySelector("[type=submit]"),
      () => api("POST", "/api/login", { email, password }));
    if (result.ok) {
      go(result.data.next);
      return;
    }
    form.password.value = "";
    showError(error, messageFor(result));
    form.password.focus();
  });
}

function codeForm(form) {
  const error = document.getElementById("code-error");
  const totpField = document.getElementById("totp-field");
  const recoveryField = document.getElementById("recovery-field");
  const useRecovery = document.getElementById("use-recovery");
  const useTotp = document.getElementById("use-totp");
  const totpInput = document.getElementById("totp-code");
  const recoveryInput = document.getElementById("recovery-code");
  const setMode = (mode) => {
    form.dataset.mode = mode;
    const recovery = mode === "recovery";
    totpField.hidden = recovery;
    recoveryField.hidden = !recovery;
    useRecovery.hidden = recovery;
    useTotp.hidden = !recovery;
    totpInput.required = !recovery;
    recoveryInput.required = recovery;
    clearError(error);
    (recovery ? recoveryInput : totpInput).focus();
  };
  useRecovery.addEventListener("click", () => setMode("recovery"));
  useTotp.addEventListener("click", () => setMode("totp"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(error);
    const recovery = form.dataset.mode === "recovery";
    const input = recovery ? recoveryInput : totpInput;
    const code = input.value.replace(/[\s-]/g, "");
    const digits = recovery ? 8 : 6;
    if (!new RegExp(`^\\d{${digits}}$`).test(code)) {
      showError(error, recovery ? "Enter one of your 8-digit recovery codes."
        : "Enter the 6-digit code from your authenticator app.");
      input.focus();
      return;
    }
    const result = await busy(form.querySelector("[type=submit]"),
      () => api("POST", "/api/login/second-factor", { code }));
    if (result.ok) {
      go(result.data.next);
      return;
    }
    if (result.code === "unauthenticated") {
      window.location.assign("/login");
      return;
    }
    if (followSession(result)) return;
    input.value = "";
    showError(error, messageFor(result, recovery ? {
      invalid_code: "That recovery code didn't work. It may be mistyped or already used.",
    } : {}));
    input.focus();
  });
}

// Login step 2 with a security key or passkey, offered when the user has one.
async function passkeyButton(button) {
  const error = document.getElementById("code-error");
  if (!webauthn.supported()) return;
  const offered = await api("POST", "/api/login/passkey/options");
  if (!offered.ok) return; // no key on this account: codes only
  button.hidden = false;
  let options = offered.data.options;
  button.addEventListener("click", async () => {
    clearError(error);
    await busy(button, async () => {
      if (!options) {
        const again = await api("POST", "/api/login/passkey/options");
        if (!again.ok) {
          if (!followSession(again)) showError(error, messageFor(again));
          return;
        }
        options = again.data.options;
      }
      let credential;
      try {
        credential = await webauthn.get(options);
      } catch (e) {
        options = null; // the challenge may have been used: ask for a new one next time
        showError(error, webauthn.cancelled(e)
          ? "The security key didn't answer. Try again, or use a code instead."
          : "This browser couldn't use your security key. Use a code instead.");
        return;
      }
      options = null; // a challenge serves one answer
      const result = await api("POST", "/api/login/passkey", { credential });
      if (result.ok) {
        go(result.data.next);
        return;
      }
      if (result.code === "unauthenticated") {
        window.location.assign("/login");
        return;
      }
      if (followSession(result)) return;
      showError(error, messageFor(result, {
        invalid_code: result.message && result.message.includes("copy")
          ? "This security key couldn't be trusted: a copy of it may exist. Use another key or a code, and tell your administrator."
          : "That security key didn't work for this account. Try another key or use a code.",
      }));
    });
  });
}

for (const button of document.querySelectorAll("[data-action='logout']")) {
  button.addEventListener("click", async () => {
    await api("POST", "/api/logout");
    window.location.assign("/login");
  });
}

const login = document.getElementById("login-form");
if (login) loginForm(login);
const code = document.getElementById("code-form");
if (code) codeForm(code);
const passkey = document.getElementById("use-passkey");
if (passkey) passkeyButton(passkey);
