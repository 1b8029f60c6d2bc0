// The confirmation prompt: a modal <dialog> (focus kept inside, Escape cancels).

export function confirmAction({ title, text, confirm = "Confirm", danger = false }) {
  const dialog = document.getElementById("confirm-dialog");
  dialog.querySelector("#confirm-title").textContent = title;
  dialog.querySelector("#confirm-text").textContent = text;
  const ok = dialog.querySelector("#confirm-ok");
  ok.textContent = confirm;
  ok.classList.toggle("btn-danger", danger);
  ok.classList.toggle("btn-primary", !danger);
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
  });
}
