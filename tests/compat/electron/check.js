// Drives the real electron-updater (no Electron) against a live Updraft server: a fake app
// adapter and a Node HTTP executor stand in for Electron's. Prints one JSON line:
// {"available": bool, "version": "...", "file": "path or null", "error": "... or null"}.
//
// usage: node check.js FEED_URL CURRENT_VERSION STAGING_ID WORK_DIR
"use strict";
const fs = require("fs");
const http = require("http");
const path = require("path");
const { HttpExecutor, configureRequestOptions, configureRequestUrl } = require("builder-util-runtime");
const { AppImageUpdater } = require("electron-updater");

class NodeHttpExecutor extends HttpExecutor {
  createRequest(options, callback) {
    const request = http.request(options);
    request.on("response", callback);
    return request;
  }
  async download(url, destination, options) {
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

async function main() {
  const [feed, current, stagingId, work] = process.argv.slice(2);
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
  // The AppImage updater is the Linux default; without APPIMAGE it needs forceDevUpdateConfig,
  // and a full (not differential) download is what this test verifies.
  process.env.APPIMAGE = path.join(work, "old.AppImage");
  fs.writeFileSync(process.env.APPIMAGE, "old");
  const updater = new AppImageUpdater(null, app);
  updater.httpExecutor = new NodeHttpExecutor();
  updater.logger = { info: () => {}, warn: () => {}, error: (e) => process.stderr.write(`${e}\n`), debug: () => {} };
  updater.autoDownload = false;
  updater.disableDifferentialDownload = true;
  const result = await updater.checkForUpdates();
  const out = { available: !!(result && result.isUpdateAvailable), version: result ? result.updateInfo.version : null, file: null, error: null };
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
