// Drives the real electron-updater (no Electron) against a live Updraft server: a fake app
// adapter and a Node HTTP executor stand in for Electron's. Prints one JSON line:
// {"available": bool, "version": "...", "file": "path or null", "error": "... or null"}.
//
// usage: node check.js FEED_URL CURRENT_VERSION STAGING_ID WORK_DIR [OLD_INSTALLER]
//   With OLD_INSTALLER, the NSIS updater (as on Windows) downloads differentially from the old
//   installer and both releases' .blockmap files; the output adds the Range headers it sent.
// usage: node check.js --blockmap FILE OUT   writes an electron-builder style blockmap (gzip JSON)
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const http = require("http");
const path = require("path");
const zlib = require("zlib");
const { HttpExecutor, configureRequestOptions, configureRequestUrl } = require("builder-util-runtime");
const { AppImageUpdater, NsisUpdater } = require("electron-updater");

const ranges = [];
let fullDownloads = 0;

class NodeHttpExecutor extends HttpExecutor {
  createRequest(options, callback) {
    const headers = options.headers || {};
    const range = headers.Range || headers.range;
    if (range) ranges.push(String(range));
    const request = http.request(options);
    request.on("response", callback);
    return request;
  }
  async download(url, destination, options) {
    fullDownloads += 1;
    return await options.cancellationToken.createPromise((resolve, reject, onCancel) => {
      const requestOptions = { headers: options.headers || undefined, redirect: "manual" };
      configureRequestUrl(url, requestOptions);
      configureRequestOptions(requestOptions);
      this.doDownload(requestOptions, {
        destination,
        options,
        onCancel,
        callback: (error) => (error == null ? resolve(destination) : reject(error)),
        responseHandler: null,
      }, 0);
    });
  }
}

function blockmap(file, out) {
  const data = fs.readFileSync(file);
  const checksums = [];
  const sizes = [];
  for (let at = 0; at < data.length; at += 16384) {
    const chunk = data.subarray(at, Math.min(at + 16384, data.length));
    checksums.push(crypto.createHash("sha256").update(chunk).digest("base64"));
    sizes.push(chunk.length);
  }
  const map = { version: "2", files: [{ name: "file", offset: 0, checksums, sizes }] };
  fs.writeFileSync(out, zlib.gzipSync(JSON.stringify(map)));
}

async function main() {
  if (process.argv[2] === "--blockmap") return blockmap(process.argv[3], process.argv[4]);
  const [feed, current, stagingId, work, oldInstaller] = process.argv.slice(2);
  const userData = path.join(work, "userData");
  fs.mkdirSync(userData, { recursive: true });
  // electron-updater keeps the install's staging id here and sends it as x-user-staging-id.
  fs.writeFileSync(path.join(userData, ".updaterId"), stagingId);
  const configPath = path.join(work, "app-update.yml");
  fs.writeFileSync(configPath, `provider: generic\nurl: ${feed}\nupdaterCacheDirName: updraft-test\n`);
  const app = {
    version: current,
    name: "updraft-test",
    isPackaged: true,
    appUpdateConfigPath: configPath,
    userDataPath: userData,
    baseCachePath: path.join(work, "cache"),
    whenReady: () => Promise.resolve(),
    relaunch: () => {},
    quit: () => {},
    onQuit: () => {},
  };
  let updater;
  if (oldInstaller) {
    // The NSIS updater keeps the installed version's installer in its cache directory and
    // downloads only the blocks that changed; electron-builder's own tests select the Windows
    // channel file the same way.
    const cacheDir = path.join(app.baseCachePath, "updraft-test");
    fs.mkdirSync(cacheDir, { recursive: true });
    fs.copyFileSync(oldInstaller, path.join(cacheDir, "installer.exe"));
    updater = new NsisUpdater(null, app);
    updater._testOnlyOptions = { platform: "win32", isUseDifferentialDownload: true };
  } else {
    // The AppImage updater is the Linux default; a full download is what this path verifies.
    process.env.APPIMAGE = path.join(work, "old.AppImage");
    fs.writeFileSync(process.env.APPIMAGE, "old");
    updater = new AppImageUpdater(null, app);
    updater.disableDifferentialDownload = true;
  }
  updater.httpExecutor = new NodeHttpExecutor();
  updater.logger = { info: () => {}, warn: () => {}, error: (e) => process.stderr.write(`${e}\n`), debug: () => {} };
  updater.autoDownload = false;
  const result = await updater.checkForUpdates();
  const out = { available: !!(result && result.isUpdateAvailable), version: result ? result.updateInfo.version : null, file: null, error: null, ranges };
  Object.defineProperty(out, "fullDownloads", { enumerable: true, get: () => fullDownloads });
  if (out.available) {
    try {
      const files = await updater.downloadUpdate();
      out.file = files[0];
    } catch (e) {
      out.error = String(e && e.message ? e.message : e);
    }
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ available: false, version: null, file: null, error: String(e && e.stack ? e.stack : e) }) + "\n");
});
