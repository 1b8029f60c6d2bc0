// Recovery codes on screen: the list, Copy (clipboard) and Download (a .txt file).

import { toast } from "./toast.js";

export function renderCodes(list, codes) {
  list.replaceChildren(
    ...codes.map(({ code, used }) => {
      const item = document.createElement("li");
      item.className = used ? "code used" : "code";
      const value = document.createElement("span");
      value.className = "code-value";
      value.textContent = `${code.slice(0, 4)} ${code.slice(4)}`;
      item.append(value);
      if (used) {
        const tag = document.createElement("span");
        tag.className = "code-tag";
        tag.textContent = "Used";
        item.append(tag);
      }
      item.dataset.code = code;
      item.dataset.used = used ? "true" : "false";
      return item;
    }),
  );
}

export function codesText(list) {
  const lines = [...list.querySelectorAll("li")].map(
    (item) => `${item.dataset.code}${item.dataset.used === "true" ? "  (used)" : ""}`,
  );
  return ["Recovery codes. Each code works once. Keep them somewhere safe.", "", ...lines, ""].join("\n");
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error("copy refused");
}

function download(text, filename) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// Wires every Copy / Download button and every "I've saved them" checkbox on the page.
export function wireCodeActions(root = document) {
  for (const button of root.querySelectorAll("[data-action='copy-codes']")) {
    button.addEventListener("click", async () => {
      const list = document.getElementById(button.dataset.codes);
      try {
        await copyText(codesText(list).trim() + "\n");
        toast("Recovery codes copied to the clipboard.");
      } catch {
        toast("Your browser didn't allow copying. Use Download instead.", "error");
      }
    });
  }
  for (const button of root.querySelectorAll("[data-action='download-codes']")) {
    button.addEventListener("click", () => {
      download(codesText(document.getElementById(button.dataset.codes)), "recovery-codes.txt");
    });
  }
  for (const box of root.querySelectorAll("input[data-enables]")) {
    const target = document.getElementById(box.dataset.enables);
    const sync = () => { target.disabled = !box.checked; };
    box.addEventListener("change", sync);
    sync();
  }
}
