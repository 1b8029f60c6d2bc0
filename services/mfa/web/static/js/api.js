// The JSON API, called the way its CSRF rule expects: JSON bodies, same origin, cookies.
// Nothing here ever logs a request or a response: they may hold passwords, codes or keys.

export async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body ?? {});
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    return { ok: false, status: 0, code: "network", message: "" };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  const error = data && data.error ? data.error : {};
  return {
    ok: response.ok,
    status: response.status,
    data,
    code: error.code || "",
    message: error.message || "",
    retryAfter: Number(response.headers.get("Retry-After") || 0),
  };
}

function waitText(seconds) {
  if (seconds >= 120) return `${Math.ceil(seconds / 60)} minutes`;
  if (seconds === 1) return "1 second";
  return `${seconds} seconds`;
}

// Clear, human messages for the failures a person can run into.
const MESSAGES = {
  invalid_credentials: "Wrong email or password. Check them and try again.",
  invalid_code: "That code didn't work. Check your authenticator app and try again; each code can only be used once.",
  setup_window_expired: "Your 10 minutes to complete the setup ran out. Enter your password again to continue.",
  reauthentication_required: "For your security, enter your current password again.",
  two_factor_required: "Your administrator requires 2FA for your account, so it can't be disabled.",
  email_taken: "Another account already uses this email.",
  not_found: "This user no longer exists in your organization.",
  conflict: "Someone else changed this at the same time. Please try again.",
  network: "Can't reach the server. Check your connection and try again.",
  forbidden: "You're not allowed to do this.",
};

export function messageFor(result, overrides = {}) {
  if (result.code === "too_many_attempts") {
    const wait = result.retryAfter || 30;
    return `Too many failed attempts. For your security, wait ${waitText(wait)} before trying again.`;
  }
  if (overrides[result.code]) return overrides[result.code];
  if (MESSAGES[result.code]) return MESSAGES[result.code];
  if (result.code === "validation_error" && result.message) {
    return `Please check the form: ${result.message}.`;
  }
  if (result.status >= 500) return "Something went wrong on our side. Please try again in a moment.";
  return result.message ? `${result.message[0].toUpperCase()}${result.message.slice(1)}.` : "Something went wrong. Please try again.";
}

// A session that ended, or that must finish a forced step first, goes where the server sends it.
export function followSession(result) {
  if (result.code === "unauthenticated") {
    window.location.assign("/login");
    return true;
  }
  if (result.code === "setup_2fa_required" || result.code === "regenerate_codes_required") {
    window.location.assign("/");
    return true;
  }
  return false;
}

export function showError(element, text) {
  element.textContent = text;
  element.hidden = false;
  element.focus?.();
}

export function clearError(element) {
  element.textContent = "";
  element.hidden = true;
}

// Disables a submit button while its request runs, so a double click sends one request.
export async function busy(button, work) {
  if (!button) return work();
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

// A message shown on the next page, after a navigation.
export function flashNext(text) {
  sessionStorage.setItem("flash", text);
}

// A "current password" form: reauthenticates (opening the 10-minute window), then runs `then`.
// `then` may return an API result; a failed one (like a wrong password) is shown in
// `errorElement`, and a session that must go elsewhere is followed.
export function onPasswordConfirmed(form, input, errorElement, then) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(errorElement);
    const password = input.value;
    if (!password) {
      showError(errorElement, "Enter your current password.");
      return;
    }
    await busy(event.submitter || form.querySelector("[type=submit]"), async () => {
      const reauth = await api("POST", "/api/me/reauthenticate", { password });
      input.value = "";
      const result = reauth.ok ? await then() : reauth;
      if (!result || result.ok || followSession(result)) return;
      showError(errorElement, messageFor(result, { invalid_credentials: "Wrong password. Try again." }));
      input.focus();
    });
  });
}
