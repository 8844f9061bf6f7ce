// Chromium launch flags that work in containers and CI (no sandbox, no GPU,
// no background traffic); each launch adds its own fresh --user-data-dir.
export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
