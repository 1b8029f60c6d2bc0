// The server's clock as seen from the page: the 10-minute window is counted on the server's
// time, which the page receives in <meta name="server-now">.

const meta = document.querySelector("meta[name='server-now']");
const offset = meta ? Date.parse(meta.content) - Date.now() : 0;

export function serverNow() {
  return Date.now() + (Number.isNaN(offset) ? 0 : offset);
}

export function formatLeft(ms) {
  const seconds = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}
