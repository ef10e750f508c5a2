//! Admin API for health-gated rollouts: a release's schedule and health (`rollout status`),
//! an app's halt rules and webhook. Wire types live here, apart from the domain's.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use updraft_core::health::{Interval, Metric, Rule, RuleOutcome, Rules, Schedule};
use updraft_core::{AppId, Percent, Version};
use updraft_store::{HealthSettingsRow, ScheduleRow, ScheduleState};
use utoipa::ToSchema;

use super::admin::{AppPath, ReleasePath, RequestId};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse, Json, Path};
use crate::ops;
use crate::rollouts::{self, webhook, Evaluation};
use crate::state::AppState;

// ---- wire types ----

#[derive(Serialize, ToSchema)]
pub struct StepInfo {
    pub percent: f64,
    /// Seconds to soak at this step before the next; null on the last step.
    pub soak_secs: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleInfo {
    /// Canonical text, e.g. `1%:1h,10%:6h,100%`.
    pub schedule: String,
    pub steps: Vec<StepInfo>,
    /// Index of the current step.
    pub step: u32,
    pub step_started_at: String,
    /// active, completed or halted.
    pub state: &'static str,
    /// The next step's share, if any.
    pub next_percent: Option<f64>,
    /// The earliest time of the next step (it also needs the release to be healthy).
    pub next_not_before: Option<String>,
    /// The evidence of the last automatic halt.
    pub halt_evidence: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct IntervalInfo {
    /// Observed proportion of good outcomes (crash-free sessions or clients, successful installs).
    pub rate: f64,
    /// Wilson score interval.
    pub lower: f64,
    pub upper: f64,
    pub good: u64,
    pub reports: u64,
}

impl From<Interval> for IntervalInfo {
    fn from(i: Interval) -> Self {
        IntervalInfo { rate: i.rate, lower: i.lower, upper: i.upper, good: i.successes, reports: i.trials }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RuleInfo {
    /// crash_free_sessions, crash_free_clients or install_failure_rate.
    pub metric: &'static str,
    pub min_sample: u64,
    pub tolerance: f64,
    /// no_data (neither release reports this metric: left out), waiting (too few reports),
    /// healthy or tripped.
    pub state: &'static str,
    pub new: IntervalInfo,
    pub baseline: IntervalInfo,
    /// The baseline's lower bound minus the tolerance; the new upper bound must stay at or above it.
    pub threshold: f64,
    /// new.upper − threshold: below 0 trips.
    pub margin: f64,
}

fn rule_state(s: updraft_core::health::RuleState) -> &'static str {
    use updraft_core::health::RuleState::*;
    match s {
        NoData => "no_data",
        Waiting => "waiting",
        Healthy => "healthy",
        Tripped => "tripped",
    }
}

fn verdict_str(v: updraft_core::health::Verdict) -> &'static str {
    use updraft_core::health::Verdict::*;
    match v {
        Waiting => "waiting",
        Healthy => "healthy",
        Tripped => "tripped",
    }
}

impl From<&RuleOutcome> for RuleInfo {
    fn from(o: &RuleOutcome) -> Self {
        RuleInfo {
            metric: o.rule.metric.as_str(),
            min_sample: o.rule.min_sample,
            tolerance: o.rule.tolerance,
            state: rule_state(o.state),
            new: o.new.into(),
            baseline: o.baseline.into(),
            threshold: o.threshold,
            margin: o.margin,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Counts {
    pub sessions: u64,
    pub crashed_sessions: u64,
    pub clients: u64,
    pub crashed_clients: u64,
    pub installs: u64,
    pub failed_installs: u64,
}

impl From<updraft_core::health::HealthCounts> for Counts {
    fn from(c: updraft_core::health::HealthCounts) -> Self {
        Counts {
            sessions: c.sessions,
            crashed_sessions: c.crashed_sessions,
            clients: c.clients,
            crashed_clients: c.crashed_clients,
            installs: c.installs,
            failed_installs: c.failed_installs,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PlatformHealthInfo {
    pub platform: String,
    /// The release this one replaces on the channel and platform; null when there is none.
    pub baseline_version: Option<String>,
    pub new: Counts,
    pub baseline: Counts,
    /// waiting, healthy or tripped.
    pub verdict: &'static str,
    pub rules: Vec<RuleInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct ClosestRule {
    pub platform: String,
    #[serde(flatten)]
    pub rule: RuleInfo,
}

#[derive(Serialize, ToSchema)]
pub struct RolloutStatus {
    pub app: String,
    pub version: String,
    pub channel: String,
    /// draft, published, halted or yanked.
    pub state: &'static str,
    pub rollout_percent: f64,
    pub schedule: Option<ScheduleInfo>,
    /// Over every platform: tripped if any rule trips, waiting if any lacks reports, else healthy.
    pub verdict: &'static str,
    /// Reports for this release count from here.
    pub since: String,
    pub platforms: Vec<PlatformHealthInfo>,
    /// The rule that trips, or the one closest to tripping.
    pub closest_rule: Option<ClosestRule>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// Steps `PERCENT:SOAK`, the last without a soak, e.g. `1%:1h,10%:6h,50%:1d,100%`
    /// (soak units s, m, h, d).
    schedule: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    /// crash_free_sessions, crash_free_clients or install_failure_rate.
    #[schema(pattern = "^(crash_free_sessions|crash_free_clients|install_failure_rate)$")]
    pub metric: String,
    /// Reports the new release needs before the rule can pass or trip.
    #[schema(minimum = 1)]
    pub min_sample: u64,
    /// Proportion below the baseline's lower bound that is tolerated (0.005 = half a point).
    #[schema(minimum = 0, maximum = 1)]
    pub tolerance: f64,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// http:// or https:// URL the halt is POSTed to.
    pub url: String,
    /// json (generic, default) or slack (`{"text": …}`).
    #[serde(default)]
    #[schema(pattern = "^(json|slack)$")]
    pub format: Option<String>,
}

/// An app's halt rules and webhook. `PUT` replaces them; absent `rules` means the defaults.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthRules {
    /// Standard deviations for the Wilson intervals (1.96 ≈ 95 %), 0.5 to 5.
    #[serde(default)]
    #[schema(minimum = 0.5, maximum = 5)]
    pub z: Option<f64>,
    /// The rules (at most 16); absent or null: the defaults.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub rules: Option<Vec<RuleBody>>,
    #[serde(default)]
    pub webhook: Option<WebhookBody>,
}

/// An app's halt rules and webhook in force.
#[derive(Serialize, ToSchema)]
pub struct HealthRulesInfo {
    /// Standard deviations for the Wilson intervals.
    pub z: f64,
    pub rules: Vec<RuleBody>,
    pub webhook: Option<WebhookBody>,
    /// Whether these are the defaults (none were set, or they were reset).
    pub defaults: bool,
}

fn schedule_info(row: &ScheduleRow) -> Option<ScheduleInfo> {
    let schedule: Schedule = row.schedule.parse().ok()?;
    let steps = schedule.steps();
    let next = steps.get(row.step as usize + 1).filter(|_| row.state == ScheduleState::Active);
    let not_before = next.and_then(|_| {
        let started = time::OffsetDateTime::parse(&row.step_started_at, &time::format_description::well_known::Rfc3339).ok()?;
        let soak = steps.get(row.step as usize)?.soak_secs?;
        (started + time::Duration::seconds(soak as i64)).format(&time::format_description::well_known::Rfc3339).ok()
    });
    Some(ScheduleInfo {
        schedule: row.schedule.clone(),
        steps: steps.iter().map(|s| StepInfo { percent: s.percent.as_f64(), soak_secs: s.soak_secs }).collect(),
        step: row.step,
        step_started_at: row.step_started_at.clone(),
        state: row.state.as_str(),
        next_percent: next.map(|s| s.percent.as_f64()),
        next_not_before: not_before,
        halt_evidence: row.evidence.as_deref().and_then(|e| serde_json::from_str(e).ok()),
    })
}

fn status(release: &updraft_store::ReleaseRow, schedule: Option<&ScheduleRow>, eval: &Evaluation) -> RolloutStatus {
    RolloutStatus {
        app: release.app.clone(),
        version: release.version.clone(),
        channel: release.channel.clone(),
        state: release.state.as_str(),
        rollout_percent: Percent::from_basis_points(release.rollout_bp).map(Percent::as_f64).unwrap_or(0.0),
        schedule: schedule.and_then(schedule_info),
        verdict: verdict_str(eval.verdict),
        since: eval.since.clone(),
        platforms: eval
            .platforms
            .iter()
            .map(|p| PlatformHealthInfo {
                platform: p.platform.clone(),
                baseline_version: p.baseline.clone(),
                new: p.new_counts.into(),
                baseline: p.baseline_counts.into(),
                verdict: verdict_str(p.report.verdict),
                rules: p.report.outcomes.iter().map(RuleInfo::from).collect(),
            })
            .collect(),
        closest_rule: eval.closest().map(|(platform, o)| ClosestRule { platform: platform.to_owned(), rule: o.into() }),
    }
}

// ---- handlers ----

fn release_params(p: &ReleasePath) -> ApiResult<(AppId, Version)> {
    Ok((parse("invalid_app_id", &p.app)?, parse("invalid_version", &p.version)?))
}

/// Put a rollout schedule on a release (replacing any). The background job raises the share
/// step by step after each soak time, only while the release is as healthy as its baseline,
/// and halts it when a rule trips. A published release below the first step is raised to it now.
#[utoipa::path(put, path = "/v1/admin/apps/{app}/releases/{version}/schedule", operation_id = "set_schedule", tag = "rollouts",
    params(ReleasePath), request_body = ScheduleBody,
    responses((status = 200, description = "The schedule and the release's health", body = RolloutStatus)), security(("bearer" = [])))]
pub async fn set_schedule(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(p): Path<ReleasePath>,
    Json(body): Json<ScheduleBody>,
) -> ApiResult<Response> {
    let (app, version) = release_params(&p)?;
    ops::require_app(&state, &caller, &app, Role::Publisher).await?;
    let schedule: Schedule = body
        .schedule
        .parse()
        .map_err(|e: updraft_core::health::InvalidSchedule| ApiError::bad_request("invalid_schedule", e.to_string()))?;
    let audit = |detail| ops::audit(&caller, "rollout.schedule", Some(&app), detail, rid.as_deref());
    rollouts::set_schedule(&state, audit, &app, &version, &schedule).await?;
    rollout_status_of(&state, &app, &version).await
}

/// Stops a release's schedule where it stands: the release keeps its share and state, and the
/// job no longer advances or halts it (people are in charge again). `PUT` starts a new one.
#[utoipa::path(delete, path = "/v1/admin/apps/{app}/releases/{version}/schedule", operation_id = "delete_schedule", tag = "rollouts",
    params(ReleasePath),
    responses((status = 200, description = "The release's rollout, now without a schedule", body = RolloutStatus),
        (status = 404, description = "No such release, or it has no schedule")),
    security(("bearer" = [])))]
pub async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(p): Path<ReleasePath>,
) -> ApiResult<Response> {
    let (app, version) = release_params(&p)?;
    ops::require_app(&state, &caller, &app, Role::Publisher).await?;
    {
        let _guard = state.lock_app(&app).await?;
        let releases = state.store.list_releases(app.as_str()).await?;
        let release = releases
            .iter()
            .find(|r| r.version.parse::<Version>().is_ok_and(|v| v == version))
            .ok_or_else(|| ApiError::release_not_found(app.as_str(), &version.to_string()))?;
        let no_schedule = || ApiError::not_found("schedule_not_found", format!("release {} has no rollout schedule", release.version));
        let row = state.store.get_schedule(app.as_str(), &release.version).await?.ok_or_else(no_schedule)?;
        let detail = serde_json::json!({
            "version": release.version, "schedule": row.schedule, "step": row.step, "state": row.state.as_str(),
            "rollout_bp": release.rollout_bp,
        });
        let audit = ops::audit(&caller, "rollout.schedule.clear", Some(&app), detail, rid.as_deref());
        if !state.store.delete_schedule(app.as_str(), &release.version, &audit).await? {
            return Err(no_schedule());
        }
    }
    rollout_status_of(&state, &app, &version).await
}

async fn rollout_status_of(state: &AppState, app: &AppId, version: &Version) -> ApiResult<Response> {
    let releases = state.store.list_releases(app.as_str()).await?;
    let release = releases
        .iter()
        .find(|r| r.version.parse::<Version>().is_ok_and(|v| v == *version))
        .ok_or_else(|| ApiError::release_not_found(app.as_str(), &version.to_string()))?;
    let schedule = state.store.get_schedule(app.as_str(), &release.version).await?;
    let rules = rollouts::settings(state, app).await?.rules;
    let eval = rollouts::evaluate(state, app, &releases, release, &rules).await?;
    Ok(axum::Json(status(release, schedule.as_ref(), &eval)).into_response())
}

/// A release's rollout: share, schedule and next step, health against its baseline per
/// platform (counts, Wilson bounds, every rule) and the rule closest to tripping.
#[utoipa::path(get, path = "/v1/admin/apps/{app}/releases/{version}/health", operation_id = "get_rollout_status", tag = "rollouts",
    params(ReleasePath), responses((status = 200, description = "Rollout status", body = RolloutStatus)), security(("bearer" = [])))]
pub async fn get_rollout_status(State(state): State<AppState>, caller: Caller, Path(p): Path<ReleasePath>) -> ApiResult<Response> {
    let (app, version) = release_params(&p)?;
    ops::require_app(&state, &caller, &app, Role::Viewer).await?;
    rollout_status_of(&state, &app, &version).await
}

fn rules_to_wire(settings: &rollouts::Settings, stored: bool) -> HealthRulesInfo {
    HealthRulesInfo {
        z: settings.rules.z,
        rules: settings
            .rules
            .rules
            .iter()
            .map(|r| RuleBody { metric: r.metric.as_str().to_owned(), min_sample: r.min_sample, tolerance: r.tolerance })
            .collect(),
        webhook: settings.webhook.as_ref().map(|w| WebhookBody { url: w.url.clone(), format: Some(w.format.as_str().to_owned()) }),
        defaults: !stored,
    }
}

/// An app's halt rules and webhook (the defaults until set).
#[utoipa::path(get, path = "/v1/admin/apps/{app}/health-rules", operation_id = "get_health_rules", tag = "rollouts", params(AppPath),
    responses((status = 200, description = "Rules and webhook", body = HealthRulesInfo)), security(("bearer" = [])))]
pub async fn get_health_rules(State(state): State<AppState>, caller: Caller, Path(p): Path<AppPath>) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
    ops::require_app(&state, &caller, &app, Role::Viewer).await?;
    let settings = rollouts::settings(&state, &app).await?;
    let stored = state.store.get_health_settings(app.as_str()).await?.is_some_and(|r| r.rules.is_some());
    Ok(axum::Json(rules_to_wire(&settings, stored)).into_response())
}

/// Replace an app's halt rules and webhook. Every problem in the body is reported at once.
#[utoipa::path(put, path = "/v1/admin/apps/{app}/health-rules", operation_id = "set_health_rules", tag = "rollouts", params(AppPath),
    request_body = HealthRules, responses((status = 200, description = "The new rules and webhook", body = HealthRulesInfo)), security(("bearer" = [])))]
pub async fn set_health_rules(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(p): Path<AppPath>,
    Json(body): Json<HealthRules>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
    ops::require_app(&state, &caller, &app, Role::Admin).await?;
    let mut problems = Vec::new();
    let rules = body.rules.as_ref().map(|list| {
        let rules = list
            .iter()
            .filter_map(|r| match r.metric.parse::<Metric>() {
                Ok(metric) => Some(Rule { metric, min_sample: r.min_sample, tolerance: r.tolerance }),
                Err(e) => {
                    problems.push(e);
                    None
                }
            })
            .collect();
        Rules { z: body.z.unwrap_or(1.96), rules }
    });
    let effective = rules.clone().unwrap_or_else(|| Rules { z: body.z.unwrap_or(1.96), ..Rules::default() });
    problems.extend(effective.problems());
    let format = match body.webhook.as_ref().and_then(|w| w.format.as_deref()) {
        None | Some("json") => webhook::Format::Json,
        Some("slack") => webhook::Format::Slack,
        Some(other) => {
            problems.push(format!("webhook format {other:?}: json or slack"));
            webhook::Format::Json
        }
    };
    if let Some(w) = &body.webhook {
        if let Err(e) = webhook::check_url(&w.url).and_then(|()| webhook::check_address(&w.url, state.config.webhook_allow_private)) {
            problems.push(format!("webhook url: {e}"));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::bad_request("invalid_health_rules", problems.join("; ")));
    }
    let stored_rules = (body.rules.is_some() || body.z.is_some()).then(|| serde_json::to_string(&effective).expect("rules serialize"));
    let row = HealthSettingsRow {
        app: app.to_string(),
        rules: stored_rules.clone(),
        webhook_url: body.webhook.as_ref().map(|w| w.url.clone()),
        webhook_format: format.as_str().to_owned(),
        updated_at: updraft_store::now_rfc3339(),
    };
    // The webhook URL may carry a secret path (Slack's do): the audit log records only its host.
    let host = body.webhook.as_ref().map(|w| w.url.split('/').take(3).collect::<Vec<_>>().join("/"));
    let detail =
        serde_json::json!({"rules": effective, "defaults": stored_rules.is_none(), "webhook": host, "webhook_format": format.as_str()});
    state.store.put_health_settings(&row, &ops::audit(&caller, "health_rules.set", Some(&app), detail, rid.as_deref())).await?;
    let settings = rollouts::settings(&state, &app).await?;
    Ok(axum::Json(rules_to_wire(&settings, stored_rules.is_some())).into_response())
}
