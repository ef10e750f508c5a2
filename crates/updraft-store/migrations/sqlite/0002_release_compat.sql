-- Release metadata for the compatible feeds (Tauri, electron-updater, Velopack, Sparkle), as one
-- JSON document per release: minimum system version, critical flag, extra files (such as
-- electron .blockmap files) and per-artifact digests and signatures computed once at publish.
ALTER TABLE releases ADD COLUMN compat TEXT NOT NULL DEFAULT '{}'
