// Short messages in the corner of the page, read out by screen readers (aria-live region).

export function toast(text, kind = "info") {
  const region = document.getElementById("toasts");
  if (!region) return;
  const item = document.createElement("div");
  item.className = `toast toast-${kind}`;
  item.setAttribute("role", kind === "error" ? "alert" : "status");
  item.textContent = text;
  region.append(item);
  setTimeout(() => item.classList.add("toast-leaving"), 6000);
  setTimeout(() => item.remove(), 6500);
}
