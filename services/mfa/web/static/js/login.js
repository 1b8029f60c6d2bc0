// The login page (email and password) and its second step (6-digit or 8-digit recovery code).

import { api, busy, clearError, followSession, messageFor, showError } from "./api.js";

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
