#!/usr/bin/env node
// A static server for the demo page and the browser tests: serves this
// directory (wasm/), and `models/NAME` from a model directory, on 127.0.0.1.
//   node wasm/serve.mjs [--port 8080] [--models DIR]
// then open http://127.0.0.1:8080/www/. DIR defaults to the repository's
// tests/fixtures (which holds all-MiniLM-L6-v2-Q8_0.gguf).
import { createServer } from "node:http";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const here = path.dirname(fileURLToPath(import.meta.url));

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".css": "text/css",
  ".gguf": "application/octet-stream",
  ".onnx": "application/octet-stream",
};

/** Resolves a URL path under `base`, or null if it escapes it. */
function under(base, rel) {
  const p = path.resolve(base, "." + path.posix.normalize("/" + rel));
  return p.startsWith(base + path.sep) || p === base ? p : null;
}

/**
 * Starts the server; resolves to `{ url, close }`. `extra` maps URL prefixes
 * (e.g. "/ort/") to more directories.
 */
export function serve({ port = 0, models = path.join(here, "../tests/fixtures"), extra = {} } = {}) {
  const mounts = [["/models/", path.resolve(models)], ...Object.entries(extra).map(([k, v]) => [k, path.resolve(v)])];
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    let file = null;
    for (const [prefix, dir] of mounts) {
      if (url.pathname.startsWith(prefix)) file = under(dir, decodeURIComponent(url.pathname.slice(prefix.length)));
    }
    if (!file && !mounts.some(([p]) => url.pathname.startsWith(p))) {
      let rel = decodeURIComponent(url.pathname);
      if (rel.endsWith("/")) rel += "index.html";
      file = under(here, rel);
    }
    try {
      if (!file) throw new Error("outside");
      const s = await stat(file);
      if (!s.isFile()) throw new Error("not a file");
      res.writeHead(200, {
        "content-type": TYPES[path.extname(file)] ?? "application/octet-stream",
        "content-length": s.size,
        "cache-control": "no-cache",
        // Cross-origin isolation: what threads (SharedArrayBuffer) need.
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-embedder-policy": "require-corp",
      });
      createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found\n");
    }
  });
  return new Promise((resolve) => {
    server.listen(port, "127.0.0.1", () => {
      const { port } = server.address();
      resolve({ url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { port: { type: "string" }, models: { type: "string" } } });
  const { url } = await serve({ port: Number(values.port ?? 8080), models: values.models });
  console.log(`serving ${here} at ${url}/www/`);
}
