// Settings > Users: select users in the grid (or all matching the filters) and set them
// Required or Not required in one confirmed action.

import { api, busy, clearError, flashNext, followSession, messageFor, showError } from "./api.js";
import { confirmAction } from "./dialog.js";

const bar = document.getElementById("bulk-bar");
const count = document.getElementById("bulk-count");
const error = document.getElementById("bulk-error");
const pageBox = document.getElementById("select-page");
const boxes = [...document.querySelectorAll(".select-user")];
const matching = Number(bar.dataset.matching);
let allMatching = false;

function selected() {
  return boxes.filter((box) => box.checked).map((box) => box.value);
}

function refresh() {
  const ids = selected();
  bar.hidden = ids.length === 0 && !allMatching;
  const how = allMatching ? matching : ids.length;
  count.textContent = `${how.toLocaleString()} user${how === 1 ? "" : "s"} selected`;
  document.getElementById("bulk-all").hidden = allMatching || matching <= ids.length;
  pageBox.checked = boxes.length > 0 && ids.length === boxes.length;
}

pageBox.addEventListener("change", () => {
  for (const box of boxes) box.checked = pageBox.checked;
  allMatching = false;
  refresh();
});
for (const box of boxes) {
  box.addEventListener("change", () => { allMatching = false; refresh(); });
}
document.getElementById("bulk-all").addEventListener("click", () => {
  for (const box of boxes) box.checked = true;
  allMatching = true;
  refresh();
});

async function apply(required, button) {
  clearError(error);
  const ids = selected();
  const how = allMatching ? matching : ids.length;
  const who = `${how.toLocaleString()} user${how === 1 ? "" : "s"}`;
  const sure = await confirmAction(required ? {
    title: `Require 2FA for ${who}?`,
    text: "They will have to configure two-factor authentication. Those who are logged in "
      + "see a notification bar right away; the others set it up at their next login.",
    confirm: "Require 2FA",
  } : {
    title: `Stop requiring 2FA for ${who}?`,
    text: "Their 2FA stays as it is; they may disable it if they want.",
    confirm: "Set Not required",
  });
  if (!sure) return;
  const body = allMatching
    ? { required, filter: {
      status: bar.dataset.filterStatus || null,
      required: bar.dataset.filterRequired ? bar.dataset.filterRequired === "true" : null,
      q: bar.dataset.filterQ || null,
    } }
    : { required, user_ids: ids };
  const result = await busy(button, () => api("POST", "/api/admin/users/requirement", body));
  if (!result.ok) {
    if (!followSession(result)) showError(error, messageFor(result));
    return;
  }
  flashNext(`${result.data.changed.toLocaleString()} user${result.data.changed === 1 ? "" : "s"} updated.`);
  window.location.reload();
}

document.getElementById("bulk-required").addEventListener("click",
  (event) => apply(true, event.currentTarget));
document.getElementById("bulk-not-required").addEventListener("click",
  (event) => apply(false, event.currentTarget));
refresh();
