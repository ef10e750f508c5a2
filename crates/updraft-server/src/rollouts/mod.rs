//! Health-gated rollouts: evaluating a release against its baseline, the background job that
//! moves schedules along and halts releases whose health rules trip, and the incident
//! operations that need health (resume after a halt, yank with a downgrade offer).
//!
//! Every change here goes the way of [`crate::ops`]: under the app's lock, read the releases,
//! sign new TUF metadata, and commit the release row, the metadata, the audit event and the
//! schedule row in one transaction; then rebuild the update view (which every feed is built
//! from). A halt therefore reaches `/v1/update`, our client (signed `paused`) and the feeds in
//! the same moment. Several server instances may run the job: the schedule row is written only
//! if it is still at the step this instance read (`RolloutStore::apply_schedule`), so a second
//! instance's move is refused and changes nothing.

pub mod webhook;

use std::collections::{BTreeSet, HashMap};

use axum::http::StatusCode;
use serde::Serialize;
use time::OffsetDateTime;
use updraft_core::health::{evaluate as judge_all, HealthCounts, HealthReport, RuleOutcome, Rules, Schedule, ScheduleAction, Verdict};
use updraft_core::{AppId, Percent, Version};
use updraft_store::{AuditEntry, Changeset, ReleaseRow, ReleaseState, ScheduleRow, ScheduleState};

use crate::error::{ApiError, ApiResult};
use crate::ops;
use crate::state::AppState;

/// How far back the baseline's reports count, before the new release was published.
pub const BASELINE_LOOKBACK_SECS: i64 = 7 * 86400;

/// An app's health settings, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub rules: Rules,
    pub webhook: Option<webhook::Webhook>,
}

pub async fn settings(state: &AppState, app: &AppId) -> ApiResult<Settings> {
    let Some(row) = state.store.get_health_settings(app.as_str()).await? else {
        return Ok(Settings { rules: Rules::default(), webhook: None });
    };
    let rules = match &row.rules {
        Some(json) => serde_json::from_str(json).map_err(|e| ApiError::internal(format!("stored health rules of {app}: {e}")))?,
        None => Rules::default(),
    };
    let webhook = row.webhook_url.map(|url| webhook::Webhook { url, format: webhook::Format::parse(&row.webhook_format) });
    Ok(Settings { rules, webhook })
}

/// One platform's comparison: the new release against the release it replaces there.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformHealth {
    pub platform: String,
    /// The baseline's version; `None` when nothing on this channel and platform came before.
    pub baseline: Option<String>,
    pub new_counts: HealthCounts,
    pub baseline_counts: HealthCounts,
    pub report: HealthReport,
}

/// A release's health: every platform it ships on, and the verdict over all of them.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// Reports for the new release count from here (its publication).
    pub since: String,
    pub platforms: Vec<PlatformHealth>,
}

impl Evaluation {
    /// The tripped rule, or the one closest to tripping, with its platform.
    pub fn closest(&self) -> Option<(&str, &RuleOutcome)> {
        let mut best: Option<(&str, &RuleOutcome)> = None;
        for p in &self.platforms {
            if let Some(o) = p.report.closest() {
                let better = match best {
                    None => true,
                    Some((_, b)) => rank(o) < rank(b),
                };
                if better {
                    best = Some((&p.platform, o));
                }
            }
        }
        best
    }
}

/// Orders outcomes by urgency: tripped, then judged by margin, then waiting.
fn rank(o: &RuleOutcome) -> (u8, i64) {
    use updraft_core::health::RuleState::*;
    let tier = match o.state {
        Tripped => 0,
        Healthy => 1,
        Waiting => 2,
        NoData => 3,
    };
    let key = match o.state {
        Waiting => -(o.rule.min_sample.saturating_sub(o.new.trials) as i64),
        _ => (o.margin * 1e9) as i64,
    };
    (tier, key)
}

/// The release `new` replaces on its channel and `platform`: the newest published release
/// below it that is fully rolled out, or else the newest published one below it.
pub fn baseline_for<'a>(releases: &'a [ReleaseRow], new: &ReleaseRow, platform: &str) -> Option<&'a ReleaseRow> {
    let nv: Version = new.version.parse().ok()?;
    let below = releases
        .iter()
        .filter(|r| r.channel == new.channel && r.state == ReleaseState::Published)
        .filter(|r| r.artifacts.iter().any(|a| a.platform == platform))
        .filter_map(|r| r.version.parse::<Version>().ok().filter(|v| *v < nv).map(|v| (v, r)));
    let (full, partial): (Vec<_>, Vec<_>) = below.partition(|(_, r)| r.rollout_bp >= Percent::FULL.basis_points());
    full.into_iter().max_by(|a, b| a.0.cmp(&b.0)).or_else(|| partial.into_iter().max_by(|a, b| a.0.cmp(&b.0))).map(|(_, r)| r)
}

/// (release version, platform) → the yanked versions whose clients are offered that release as
/// a downgrade: for each yanked version marked for downgrades, on each of its platforms, the
/// release it replaced there ([`baseline_for`]). Used for signed targets and the update view.
pub fn downgrade_offers<'a>(releases: &'a [ReleaseRow], downgrades: &[String]) -> HashMap<(&'a str, &'a str), Vec<Version>> {
    let mut out: HashMap<(&str, &str), Vec<Version>> = HashMap::new();
    for yanked in releases.iter().filter(|r| r.state == ReleaseState::Yanked && downgrades.contains(&r.version)) {
        let Ok(from) = yanked.version.parse::<Version>() else { continue };
        for a in &yanked.artifacts {
            if let Some(to) = baseline_for(releases, yanked, &a.platform) {
                out.entry((to.version.as_str(), a.platform.as_str())).or_default().push(from.clone());
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

fn format_time(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap_or(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

async fn counts(state: &AppState, app: &AppId, version: &str, platform: &str, since: &str) -> ApiResult<HealthCounts> {
    let c = state.store.release_health(app.as_str(), version, Some(platform), since).await?;
    Ok(HealthCounts {
        sessions: c.sessions,
        crashed_sessions: c.crashed_sessions,
        clients: c.clients,
        crashed_clients: c.crashed_clients,
        installs: c.installs,
        failed_installs: c.failed_installs,
    })
}

/// Judges `release` against its baseline on each of its platforms.
pub async fn evaluate(
    state: &AppState,
    app: &AppId,
    releases: &[ReleaseRow],
    release: &ReleaseRow,
    rules: &Rules,
) -> ApiResult<Evaluation> {
    let since_t = release.published_at.as_deref().or(Some(&release.created_at)).and_then(parse_time).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let since = format_time(since_t);
    let base_since = format_time(since_t - time::Duration::seconds(BASELINE_LOOKBACK_SECS));
    let mut platforms = Vec::new();
    let names: BTreeSet<&str> = release.artifacts.iter().map(|a| a.platform.as_str()).collect();
    for platform in names {
        let new_counts = counts(state, app, &release.version, platform, &since).await?;
        let baseline = baseline_for(releases, release, platform);
        let baseline_counts = match baseline {
            Some(b) => counts(state, app, &b.version, platform, &base_since).await?,
            None => HealthCounts::default(),
        };
        let report = judge_all(rules, &new_counts, &baseline_counts);
        platforms.push(PlatformHealth {
            platform: platform.to_owned(),
            baseline: baseline.map(|b| b.version.clone()),
            new_counts,
            baseline_counts,
            report,
        });
    }
    let verdict = if platforms.iter().any(|p| p.report.verdict == Verdict::Tripped) {
        Verdict::Tripped
    } else if platforms.iter().any(|p| p.report.verdict == Verdict::Waiting) {
        Verdict::Waiting
    } else {
        Verdict::Healthy
    };
    Ok(Evaluation { verdict, since, platforms })
}

/// Commits a change to one release (and optionally its schedule row) the way every operation
/// does: signed metadata, release row, audit event and schedule in one transaction, then the
/// update view. The caller holds the app lock and passes the app's releases with `after` at
/// `idx` already applied.
async fn commit(
    state: &AppState,
    app: &AppId,
    releases: &[ReleaseRow],
    before: &ReleaseRow,
    idx: usize,
    audit: AuditEntry,
    schedule: Option<(&ScheduleRow, Option<(u32, ScheduleState)>)>,
) -> ApiResult<()> {
    let after = &releases[idx];
    let in_targets = |s: ReleaseState| matches!(s, ReleaseState::Published | ReleaseState::Halted);
    let changed = after != before;
    let metadata = if changed && (in_targets(before.state) || in_targets(after.state)) {
        state.repo.sign_targets_change(state.store.as_ref(), app, releases).await?
    } else {
        vec![]
    };
    let mut audit = audit;
    if let Some(obj) = audit.detail.as_object_mut() {
        obj.insert(
            "metadata_versions".into(),
            metadata.iter().map(|m| serde_json::json!({"role": m.role, "version": m.version})).collect(),
        );
    }
    let changes = Changeset { releases: if changed { vec![after.clone()] } else { vec![] }, metadata, audit: Some(audit) };
    match schedule {
        Some((row, expect)) => state.store.apply_schedule(app.as_str(), &changes, row, expect).await?,
        None => state.store.apply(app.as_str(), &changes).await?,
    }
    if changed {
        ops::rebuild_view(state, app).await?;
    }
    Ok(())
}

fn system_event(action: &str, app: &AppId, detail: serde_json::Value) -> AuditEntry {
    AuditEntry { actor: "system".into(), action: action.into(), app: Some(app.to_string()), detail, request_id: None }
}

fn find(releases: &[ReleaseRow], version: &Version) -> Option<usize> {
    releases.iter().position(|r| r.version.parse::<Version>().is_ok_and(|v| v == *version))
}

/// The evidence recorded with a halt (audit event, schedule row, webhook).
pub fn evidence(app: &AppId, release: &ReleaseRow, schedule: &str, eval: &Evaluation, rules: &Rules) -> serde_json::Value {
    let tripped = eval.closest().map(|(platform, o)| {
        serde_json::json!({
            "platform": platform, "metric": o.rule.metric.as_str(), "min_sample": o.rule.min_sample,
            "tolerance": o.rule.tolerance, "new": o.new, "baseline": o.baseline, "threshold": o.threshold, "margin": o.margin,
        })
    });
    serde_json::json!({
        "app": app.as_str(), "version": release.version, "channel": release.channel,
        "rollout_percent": Percent::from_basis_points(release.rollout_bp).map(|p| p.as_f64()).unwrap_or(0.0),
        "schedule": schedule, "z": rules.z, "rule": tripped, "evaluation": eval,
    })
}

/// What one pass of the background job did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickSummary {
    pub advanced: usize,
    pub halted: usize,
    pub completed: usize,
}

/// One pass over every active schedule. A schedule that fails is logged and skipped; the
/// others still run. Webhook deliveries are started on `hooks` and never awaited here.
pub async fn tick(state: &AppState, now: OffsetDateTime, hooks: &mut tokio::task::JoinSet<()>) -> ApiResult<TickSummary> {
    let mut summary = TickSummary::default();
    for row in state.store.list_schedules(ScheduleState::Active).await? {
        match step_one(state, &row, now, hooks).await {
            Ok(Some(ScheduleAction::Advance(_))) => summary.advanced += 1,
            Ok(Some(ScheduleAction::Halt)) => summary.halted += 1,
            Ok(Some(ScheduleAction::Complete)) => summary.completed += 1,
            Ok(_) => {}
            Err(e) => tracing::error!(app = %row.app, version = %row.version, error = %e.message, "rollout schedule step failed"),
        }
    }
    Ok(summary)
}

async fn step_one(
    state: &AppState,
    listed: &ScheduleRow,
    now: OffsetDateTime,
    hooks: &mut tokio::task::JoinSet<()>,
) -> ApiResult<Option<ScheduleAction>> {
    let app: AppId = listed.app.parse().map_err(ApiError::internal)?;
    let version: Version = listed.version.parse().map_err(ApiError::internal)?;
    let lock = state.app_lock(app.as_str());
    let _guard = lock.lock().await;
    // Re-read under the lock: another instance may have moved it.
    let Some(row) = state.store.get_schedule(app.as_str(), &listed.version).await?.filter(|r| r.state == ScheduleState::Active) else {
        return Ok(None);
    };
    let expect = Some((row.step, row.state));
    let mut releases = state.store.list_releases(app.as_str()).await?;
    let Some(idx) = find(&releases, &version) else { return Ok(None) };
    let before = releases[idx].clone();
    let schedule: Schedule = row.schedule.parse().map_err(ApiError::internal)?;
    let now_s = format_time(now);
    let mut next = row.clone();
    next.updated_at = now_s.clone();
    match before.state {
        ReleaseState::Published => {}
        // Paused by hand or a draft: the schedule waits. Yanked: it is over.
        ReleaseState::Draft | ReleaseState::Halted => return Ok(None),
        ReleaseState::Yanked => {
            next.state = ScheduleState::Completed;
            let ev = system_event("rollout.schedule.end", &app, serde_json::json!({"version": before.version, "reason": "yanked"}));
            commit(state, &app, &releases, &before, idx, ev, Some((&next, expect))).await?;
            return Ok(Some(ScheduleAction::Complete));
        }
    }
    let share = Percent::from_basis_points(before.rollout_bp).unwrap_or(Percent::ZERO);
    let Some(step) = schedule.step_for(share) else {
        // Below the first step: start it now (nothing to judge yet).
        return advance(state, &app, &mut releases, &before, idx, &schedule, 0, next, expect, now_s, None).await.map(Some);
    };
    if step as u32 != row.step {
        // The share was changed by hand: follow it, and soak from now.
        next.step = step as u32;
        next.step_started_at = now_s;
        let ev = system_event("rollout.schedule.follow", &app, serde_json::json!({"version": before.version, "step": step}));
        commit(state, &app, &releases, &before, idx, ev, Some((&next, expect))).await?;
        return Ok(None);
    }
    let settings = settings(state, &app).await?;
    let eval = evaluate(state, &app, &releases, &before, &settings.rules).await?;
    let soaked = parse_time(&row.step_started_at).map_or(0, |t| (now - t).whole_seconds().max(0) as u64);
    let action = updraft_core::health::next_action(&schedule, step, soaked, eval.verdict);
    match action {
        ScheduleAction::Hold => return Ok(Some(action)),
        ScheduleAction::Complete => {
            next.state = ScheduleState::Completed;
            let ev = system_event("rollout.schedule.end", &app, serde_json::json!({"version": before.version, "reason": "last step"}));
            commit(state, &app, &releases, &before, idx, ev, Some((&next, expect))).await?;
        }
        ScheduleAction::Advance(i) => {
            advance(state, &app, &mut releases, &before, idx, &schedule, i, next, expect, now_s, Some(&eval)).await?;
        }
        ScheduleAction::Halt => {
            releases[idx].state = ReleaseState::Halted;
            let evidence = evidence(&app, &before, &row.schedule, &eval, &settings.rules);
            next.state = ScheduleState::Halted;
            next.evidence = Some(evidence.to_string());
            let ev = system_event("rollout.halt", &app, evidence.clone());
            commit(state, &app, &releases, &before, idx, ev, Some((&next, expect))).await?;
            tracing::warn!(app = %app, version = %before.version, "health rule tripped: rollout halted");
            if let Some(hook) = settings.webhook {
                hooks.spawn(webhook::deliver(hook, evidence, state.config.webhook_allow_private));
            }
        }
    }
    Ok(Some(action))
}

#[allow(clippy::too_many_arguments)]
async fn advance(
    state: &AppState,
    app: &AppId,
    releases: &mut [ReleaseRow],
    before: &ReleaseRow,
    idx: usize,
    schedule: &Schedule,
    to: usize,
    mut next: ScheduleRow,
    expect: Option<(u32, ScheduleState)>,
    now_s: String,
    eval: Option<&Evaluation>,
) -> ApiResult<ScheduleAction> {
    let step = schedule.steps()[to];
    releases[idx].rollout_bp = step.percent.basis_points();
    next.step = to as u32;
    next.step_started_at = now_s;
    let last = to + 1 == schedule.steps().len();
    if last {
        next.state = ScheduleState::Completed;
    }
    let detail = serde_json::json!({
        "version": before.version, "step": to, "schedule": schedule.to_string(),
        "from": {"rollout_bp": before.rollout_bp}, "to": {"rollout_bp": step.percent.basis_points()},
        "verdict": eval.map(|e| e.verdict), "evaluation": eval,
    });
    commit(state, app, releases, before, idx, system_event("rollout.advance", app, detail), Some((&next, expect))).await?;
    tracing::info!(app = %app, version = %before.version, percent = %step.percent, "rollout schedule advanced");
    Ok(if last { ScheduleAction::Complete } else { ScheduleAction::Advance(to) })
}

/// Puts a schedule on a release (replacing any). A published release below the first step is
/// raised to it at once, in the same transaction.
pub async fn set_schedule(
    state: &AppState,
    audit: impl FnOnce(serde_json::Value) -> AuditEntry,
    app: &AppId,
    version: &Version,
    schedule: &Schedule,
) -> ApiResult<ScheduleRow> {
    let lock = state.app_lock(app.as_str());
    let _guard = lock.lock().await;
    let mut releases = state.store.list_releases(app.as_str()).await?;
    let idx = find(&releases, version).ok_or_else(|| ApiError::release_not_found(app.as_str(), &version.to_string()))?;
    let before = releases[idx].clone();
    if before.state == ReleaseState::Yanked {
        return Err(ApiError::conflict("invalid_release_state", format!("release {} is yanked", before.version)));
    }
    let now_s = updraft_store::now_rfc3339();
    let share = Percent::from_basis_points(before.rollout_bp).unwrap_or(Percent::ZERO);
    let step = match schedule.step_for(share) {
        Some(s) => s,
        None => {
            if before.state == ReleaseState::Published {
                releases[idx].rollout_bp = schedule.steps()[0].percent.basis_points();
            }
            0
        }
    };
    let last = step + 1 == schedule.steps().len() && share >= schedule.steps()[step].percent;
    let row = ScheduleRow {
        app: app.to_string(),
        version: before.version.clone(),
        schedule: schedule.to_string(),
        step: step as u32,
        step_started_at: now_s.clone(),
        state: if last { ScheduleState::Completed } else { ScheduleState::Active },
        evidence: None,
        updated_at: now_s,
    };
    let detail = serde_json::json!({
        "version": before.version, "schedule": row.schedule, "step": step,
        "from": {"rollout_bp": before.rollout_bp}, "to": {"rollout_bp": releases[idx].rollout_bp},
    });
    commit(state, app, &releases, &before, idx, audit(detail), Some((&row, None))).await?;
    Ok(row)
}

/// Resumes a halted release. Refused with `409 health_rule_trips` while a rule still trips,
/// unless `force`. An automatic halt's schedule carries on after a resume; after a forced
/// resume over a tripping rule it stays halted (people are in charge of this rollout now).
pub async fn resume(
    state: &AppState,
    audit: impl FnOnce(serde_json::Value) -> AuditEntry,
    app: &AppId,
    version: &Version,
    force: bool,
) -> ApiResult<ReleaseRow> {
    let lock = state.app_lock(app.as_str());
    let _guard = lock.lock().await;
    let mut releases = state.store.list_releases(app.as_str()).await?;
    let idx = find(&releases, version).ok_or_else(|| ApiError::release_not_found(app.as_str(), &version.to_string()))?;
    let before = releases[idx].clone();
    if before.state != ReleaseState::Halted {
        return Err(ApiError::conflict(
            "invalid_release_state",
            format!("cannot resume release {} while it is {}", before.version, before.state.as_str()),
        ));
    }
    let rules = settings(state, app).await?.rules;
    let eval = evaluate(state, app, &releases, &before, &rules).await?;
    let trips = eval.verdict == Verdict::Tripped;
    if trips && !force {
        let why = eval.closest().map(|(p, o)| describe(p, o)).unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "health_rule_trips",
            format!("release {} is still less healthy than its baseline ({why}); resume with --force to override", before.version),
        ));
    }
    releases[idx].state = ReleaseState::Published;
    let schedule = state.store.get_schedule(app.as_str(), &before.version).await?;
    let next = schedule.as_ref().filter(|s| s.state == ScheduleState::Halted && !trips).map(|s| {
        let mut n = s.clone();
        n.state = ScheduleState::Active;
        n.step_started_at = updraft_store::now_rfc3339();
        n.updated_at = n.step_started_at.clone();
        n
    });
    let detail = serde_json::json!({
        "version": before.version, "force": force, "verdict": eval.verdict,
        "from": {"state": before.state.as_str()}, "to": {"state": "published"},
        "schedule": next.as_ref().map(|s| s.state.as_str()).or(schedule.as_ref().map(|s| s.state.as_str())),
    });
    let sched = next.as_ref().zip(schedule.as_ref()).map(|(n, s)| (n, Some((s.step, s.state))));
    commit(state, app, &releases, &before, idx, audit(detail), sched).await?;
    Ok(releases[idx].clone())
}

/// `crash_free_sessions on linux-x86_64: 95.00 % (upper 95.96 %) vs baseline lower 99.40 % − 0.50`.
pub fn describe(platform: &str, o: &RuleOutcome) -> String {
    format!(
        "{} on {platform}: {:.2}% (upper bound {:.2}%, {} reports) vs baseline lower bound {:.2}% minus tolerance {:.2} points",
        o.rule.metric.as_str(),
        o.new.rate * 100.0,
        o.new.upper * 100.0,
        o.new.trials,
        o.baseline.lower * 100.0,
        o.rule.tolerance * 100.0
    )
}

/// Yanks a release and offers its clients the last good release as a downgrade: the yank,
/// the downgrade mark and the signed metadata carrying it commit together.
pub async fn yank_with_downgrade(
    state: &AppState,
    audit: impl FnOnce(serde_json::Value) -> AuditEntry,
    app: &AppId,
    version: &Version,
) -> ApiResult<ReleaseRow> {
    let lock = state.app_lock(app.as_str());
    let _guard = lock.lock().await;
    let mut releases = state.store.list_releases(app.as_str()).await?;
    let idx = find(&releases, version).ok_or_else(|| ApiError::release_not_found(app.as_str(), &version.to_string()))?;
    let before = releases[idx].clone();
    if before.state == ReleaseState::Yanked {
        return Err(ApiError::conflict("invalid_release_state", format!("cannot yank release {} while it is yanked", before.version)));
    }
    if before.state == ReleaseState::Draft {
        return Err(ApiError::conflict("invalid_release_state", format!("release {} is a draft: nobody runs it", before.version)));
    }
    releases[idx].state = ReleaseState::Yanked;
    let targets: Vec<_> = before
        .artifacts
        .iter()
        .map(|a| (a.platform.clone(), baseline_for(&releases, &before, &a.platform).map(|b| b.version.clone())))
        .collect();
    if targets.iter().all(|(_, t)| t.is_none()) {
        return Err(ApiError::conflict(
            "no_downgrade_target",
            format!("no published release below {} on its channel to downgrade to; yank without --downgrade", before.version),
        ));
    }
    let mut downgrades = state.store.list_downgrades(app.as_str()).await?;
    downgrades.push(before.version.clone());
    let metadata = state.repo.sign_targets_change_with(state.store.as_ref(), app, &releases, Some(&downgrades)).await?;
    let detail = serde_json::json!({
        "version": before.version, "downgrade": true,
        "from": {"state": before.state.as_str()}, "to": {"state": "yanked"},
        "downgrade_to": targets.iter().map(|(p, v)| serde_json::json!({"platform": p, "version": v})).collect::<Vec<_>>(),
        "metadata_versions": metadata.iter().map(|m| serde_json::json!({"role": m.role, "version": m.version})).collect::<Vec<_>>(),
    });
    let changes = Changeset { releases: vec![releases[idx].clone()], metadata, audit: Some(audit(detail)) };
    state.store.apply_with_downgrade(app.as_str(), &changes, &before.version).await?;
    ops::rebuild_view(state, app).await?;
    Ok(releases[idx].clone())
}

/// The background job: a pass every `interval` until `stop`. Webhook deliveries run beside it
/// and are given a few seconds to finish at shutdown.
pub async fn run_loop(state: AppState, interval: std::time::Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut hooks = tokio::task::JoinSet::new();
    loop {
        match tick(&state, OffsetDateTime::now_utc(), &mut hooks).await {
            Ok(s) if s != TickSummary::default() => {
                tracing::info!(advanced = s.advanced, halted = s.halted, completed = s.completed, "rollout schedules")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e.message, "rollout schedules: pass failed"),
        }
        while hooks.try_join_next().is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => break,
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async { while hooks.join_next().await.is_some() {} }).await;
    hooks.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use updraft_store::ArtifactRow;

    fn rel(version: &str, channel: &str, state: ReleaseState, bp: u32, platforms: &[&str]) -> ReleaseRow {
        ReleaseRow {
            app: "a".into(),
            version: version.into(),
            channel: channel.into(),
            notes: None,
            state,
            rollout_bp: bp,
            salt: "s".into(),
            created_at: "2030-01-01T00:00:00Z".into(),
            published_at: None,
            artifacts: platforms
                .iter()
                .map(|p| ArtifactRow { platform: (*p).into(), filename: "f".into(), sha256: "00".into(), size: 1 })
                .collect(),
            compat: Default::default(),
        }
    }

    #[test]
    fn the_baseline_is_the_release_replaced_on_that_channel_and_platform() {
        use ReleaseState::*;
        let l = "linux-x86_64";
        let w = "windows-x86_64";
        let releases = vec![
            rel("0.9.0", "stable", Published, 10_000, &[l, w]),
            rel("1.0.0", "stable", Published, 10_000, &[l]),
            rel("1.1.0", "stable", Published, 3_000, &[l]),
            rel("1.2.0", "stable", Yanked, 10_000, &[l]),
            rel("1.5.0", "beta", Published, 10_000, &[l]),
            rel("2.0.0", "stable", Published, 100, &[l, w]),
            rel("3.0.0", "stable", Published, 10_000, &[l]),
        ];
        let new = &releases[5];
        let check = |platform: &str, want: Option<&str>| {
            assert_eq!(baseline_for(&releases, new, platform).map(|r| r.version.as_str()), want, "{platform}");
        };
        check(l, Some("1.0.0")); // fully rolled out beats the newer partial 1.1.0; yanked and beta never count
        check(w, Some("0.9.0"));
        check("darwin-aarch64", None);
        // Only a partial rollout below: that one.
        let only_partial = vec![rel("1.1.0", "stable", Published, 3_000, &[l]), rel("2.0.0", "stable", Published, 100, &[l])];
        assert_eq!(baseline_for(&only_partial, &only_partial[1], l).map(|r| r.version.as_str()), Some("1.1.0"));
    }
}
