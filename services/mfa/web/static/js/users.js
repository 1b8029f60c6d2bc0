// Settings > Users: create and edit a user (Two-factor authentication: Not required /
// Required, confirmed before saving Required), and Reset a user's 2FA.

import { api, busy, clearError, flashNext, followSession, messageFor, showError } from "./api.js";
import { confirmAction } from "./dialog.js";

const REQUIRE_TEXT = "This user will have to configure two-factor authentication. If they're "
  + "logged in, they'll see a notification bar until they do; otherwise they'll set it up at "
  + "their next login.";

function userForm(form) {
  const error = document.getElementById("user-error");
  const create = form.dataset.mode === "create";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(error);
    const required = form.querySelector("input[name='two_factor_required']:checked").value === "true";
    const name = form.elements.name.value.trim();
    if (!name) {
      showError(error, "Enter the user's name.");
      form.elements.name.focus();
      return;
    }
    const body = { name, two_factor_required: required };
    if (!form.elements.role.disabled) body.role = form.elements.role.value;
    if (create) {
      body.email = form.elements.email.value.trim();
      body.password = form.elements.password.value;
      if (!body.email || !body.email.includes("@")) {
        showError(error, "Enter the user's email address.");
        form.elements.email.focus();
        return;
      }
      if (body.password.length < 8) {
        showError(error, "The password needs at least 8 characters.");
        form.elements.password.focus();
        return;
      }
    }
    if (required && form.dataset.wasRequired !== "true") {
      const sure = await confirmAction({
        title: "Require two-factor authentication?",
        text: REQUIRE_TEXT,
        confirm: "Require 2FA",
      });
      if (!sure) return;
    }
    const result = await busy(event.submitter, () => (create
      ? api("POST", "/api/admin/users", body)
      : api("PATCH", `/api/admin/users/${form.dataset.userId}`, body)));
    if (result.ok) {
      flashNext(create ? `${result.data.name} was added.` : "Changes saved.");
      window.location.assign(`/settings/users/${result.data.user_id}`);
      return;
    }
    if (followSession(result)) return;
    showError(error, messageFor(result));
  });
}

function resetSection(section) {
  const button = document.getElementById("reset");
  const error = document.getElementById("reset-error");
  button.addEventListener("click", async () => {
    const sure = await confirmAction({
      title: `Reset 2FA for ${section.dataset.userName}?`,
      text: "Their 2FA status changes to Off, and their authenticator app and recovery codes stop "
        + "working. They won't be logged out. The Required setting stays unchanged: if 2FA is "
        + "required, they'll need to configure it again.",
      confirm: "Reset",
      danger: true,
    });
    if (!sure) return;
    clearError(error);
    const result = await busy(button,
      () => api("POST", `/api/admin/users/${section.dataset.userId}/2fa/reset`));
    if (result.ok) {
      flashNext("2FA was reset. The user's 2FA status is now Off.");
      window.location.reload();
      return;
    }
    if (followSession(result)) return;
    showError(error, messageFor(result));
  });
}

const form = document.getElementById("user-form");
if (form) userForm(form);
const section = document.getElementById("user-two-factor");
if (section) resetSection(section);
