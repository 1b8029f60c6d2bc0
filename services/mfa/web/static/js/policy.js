// Settings > Security policy: Require 2FA for all users / for new users, each change confirmed
// with how many users it affects.

import { api, busy, clearError, flashNext, followSession, messageFor, showError } from "./api.js";
import { confirmAction } from "./dialog.js";

const form = document.getElementById("policy-form");
const error = document.getElementById("policy-error");

function plural(count, word) {
  return `${count.toLocaleString()} ${word}${count === 1 ? "" : "s"}`;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError(error);
  const requireAll = document.getElementById("require-all").checked;
  const requireNew = document.getElementById("require-new").checked;
  const wasAll = form.dataset.requireAll === "true";
  const wasNew = form.dataset.requireNew === "true";
  const total = Number(form.dataset.total);
  const notRequired = Number(form.dataset.notRequired);
  const prompts = [];
  if (requireAll && !wasAll) {
    prompts.push({
      title: "Require 2FA for all users?",
      text: `This requires 2FA for all ${plural(total, "user")}: ${plural(notRequired, "user")} `
        + "not required now will have to configure it. Those who are logged in see the "
        + "notification bar right away; the others set it up at their next login.",
      confirm: "Require 2FA for all users",
    });
  }
  if (!requireAll && wasAll) {
    prompts.push({
      title: "Stop requiring 2FA for all users?",
      text: "Users required only by this policy will no longer be required. Users you "
        + "required one by one stay required.",
      confirm: "Stop requiring",
    });
  }
  if (requireNew && !wasNew && !requireAll) {
    prompts.push({
      title: "Require 2FA for new users?",
      text: "Users you add from now on will be required to configure 2FA. It changes nothing "
        + `for the ${plural(total, "user")} you have now.`,
      confirm: "Require for new users",
    });
  }
  for (const prompt of prompts) {
    if (!(await confirmAction(prompt))) return;
  }
  const result = await busy(event.submitter, () => api("PUT", "/api/admin/policy", {
    require_all: requireAll, require_new: requireNew,
  }));
  if (!result.ok) {
    if (!followSession(result)) showError(error, messageFor(result));
    return;
  }
  flashNext(result.data.applied
    ? `Security policy saved. ${plural(result.data.counts.required, "user")} of ${result.data.counts.total} now required.`
    : "Security policy saved. It is still being applied to every user: refresh the users list in a moment.");
  window.location.reload();
});
