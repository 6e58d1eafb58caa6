// Starts the page. Served over http(s): loads app.js as a module. Opened from disk (file://),
// where browsers run neither module scripts nor workers from files: loads offline.js (the
// scripts, the runtime and the models as one classic script, written by lenssr export-site),
// runs the scripts from blob: URLs and the pipeline in a worker that imports its modules from
// blob: URLs of its own.
"use strict";
(function () {
  if (location.protocol !== "file:") {
    const s = document.createElement("script");
    s.type = "module";
    s.src = "app.js";
    document.head.appendChild(s);
    return;
  }
  // blob: URLs of the modules `order` (dependencies first) of `sources`, their
  // "@lenssr/<path>" import specifiers replaced by the URLs of those modules.
  function moduleUrls(sources, order) {
    const urls = {};
    for (const path of order) {
      const code = sources[path].replace(/"@lenssr\/([^"]+)"/g, (m, p) => JSON.stringify(urls[p]));
      urls[path] = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
    }
    return urls;
  }
  // The worker's first script: makes blob: URLs of the worker's modules, imports worker.js.
  const LOADER = `
    ${moduleUrls}
    let pending = [];
    self.onmessage = async (e) => {
      if (e.data.type !== "offline-init") { pending.push(e); return; }
      const { sources, order, files, manifest } = e.data;
      self.LENSSR_FILES = files;
      self.LENSSR_MANIFEST = manifest;
      try {
        await import(moduleUrls(sources, order)["worker.js"]);
      } catch (err) {
        postMessage({ type: "error", message: "the page's worker did not start: " + err });
        return;
      }
      for (const m of pending) self.onmessage(m);
      pending = null;
    };`;
  const s = document.createElement("script");
  s.src = "offline.js";
  s.onerror = () => {
    const box = document.getElementById("message");
    box.textContent = "Opened from disk, this copy of the site needs offline.js (lenssr export-site " +
      "writes it unless --no-offline): serve the folder instead, e.g. python -m http.server -d site";
    box.hidden = false;
  };
  s.onload = () => {
    const O = self.LENSSR_OFFLINE;
    const decode = (b64) => {
      const bin = atob(b64);
      const out = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out;
    };
    O.createWorker = () => {
      const w = new Worker(URL.createObjectURL(new Blob([LOADER], { type: "text/javascript" })));
      const files = {};
      for (const [path, b64] of Object.entries(O.binaries)) files[path] = decode(b64);
      w.postMessage({ type: "offline-init", sources: O.sources, order: O.order, files, manifest: O.manifest });
      return w;
    };
    import(moduleUrls(O.sources, O.page)["app.js"]);
  };
  document.head.appendChild(s);
})();
