//! Release health, as pure functions: rollout schedules (`1%:1h,10%:6h,50%:1d,100%`), Wilson
//! score intervals, and the rules that decide whether a new release is as healthy as the one it
//! replaces. The server feeds in counts and the time; nothing here reads a clock or a database.
//!
//! A rule compares one metric of the new release with the baseline's. It *trips* when the new
//! release's upper bound is below the baseline's lower bound minus a tolerance: even the most
//! favourable reading of the new release's numbers is measurably worse. It *waits* while the
//! new release has fewer reports than the rule's minimum sample. A rule whose metric nobody
//! reports at all (neither release has a single report of it, e.g. install reports from an app
//! that does not send them) has *no data* and is left out, but at least one rule must be
//! judged for a release to count as healthy. Only reports count: a client that never reports
//! adds nothing, so a release nobody reports on waits instead of passing.
//!
//! ```
//! use updraft_core::health::{evaluate, HealthCounts, Rules, Schedule, Verdict};
//! let schedule: Schedule = "1%:1h,10%:6h,50%:1d,100%".parse().unwrap();
//! assert_eq!(schedule.steps().len(), 4);
//! let baseline = HealthCounts { sessions: 20_000, crashed_sessions: 100, ..Default::default() };
//! let new = HealthCounts { sessions: 2_000, crashed_sessions: 100, ..Default::default() };
//! let report = evaluate(&Rules::default(), &new, &baseline);
//! assert_eq!(report.verdict, Verdict::Tripped);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Percent;

// ---- schedules ----

/// One step of a schedule: raise the share to `percent`, then wait `soak_secs` (and for the
/// release to be healthy) before the next step. The last step has no soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub percent: Percent,
    pub soak_secs: Option<u64>,
}

/// A rollout schedule: steps with strictly increasing shares, each but the last with a soak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule {input:?}: {reason}")]
pub struct InvalidSchedule {
    pub input: String,
    pub reason: String,
}

/// At most this many steps (a schedule is for people; more is a mistake).
pub const MAX_STEPS: usize = 20;

impl Schedule {
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The step index a share belongs to: the last step whose share is at most `share`.
    pub fn step_for(&self, share: Percent) -> Option<usize> {
        self.steps.iter().rposition(|s| s.percent <= share)
    }
}

/// `90s`, `15m`, `6h`, `1d`: a whole number and a unit.
pub fn parse_duration(s: &str) -> Option<u64> {
    let unit = match s.as_bytes().last()? {
        b's' => 1,
        b'm' => 60,
        b'h' => 3600,
        b'd' => 86400,
        _ => return None,
    };
    let digits = &s[..s.len() - 1];
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// The shortest exact spelling of a duration (`3600` → `1h`).
pub fn format_duration(secs: u64) -> String {
    for (unit, n) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if secs != 0 && secs.is_multiple_of(n) {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

impl FromStr for Schedule {
    type Err = InvalidSchedule;
    fn from_str(input: &str) -> Result<Self, InvalidSchedule> {
        let bad = |reason: String| InvalidSchedule { input: input.chars().take(200).collect(), reason };
        let parts: Vec<&str> = input.split(',').map(str::trim).collect();
        if input.trim().is_empty() {
            return Err(bad("no steps: write e.g. 1%:1h,10%:6h,100%".into()));
        }
        if parts.len() > MAX_STEPS {
            return Err(bad(format!("{} steps; at most {MAX_STEPS}", parts.len())));
        }
        let mut steps = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let (pct, soak) = match part.split_once(':') {
                Some((p, d)) => (p.trim(), Some(d.trim())),
                None => (*part, None),
            };
            let percent: Percent = pct.parse().map_err(|_| bad(format!("step {}: {pct:?} is not a percentage like 10%", i + 1)))?;
            let soak_secs = match soak {
                Some(d) => Some(
                    parse_duration(d)
                        .filter(|&s| s > 0)
                        .ok_or_else(|| bad(format!("step {}: {d:?} is not a duration like 30s, 15m, 6h or 1d", i + 1)))?,
                ),
                None if last => None,
                None => return Err(bad(format!("step {} ({pct}) needs a soak time, e.g. {pct}:1h", i + 1))),
            };
            if percent == Percent::ZERO {
                return Err(bad(format!("step {}: a step must offer the release to someone (above 0%)", i + 1)));
            }
            if let Some(prev) = steps.last().map(|s: &Step| s.percent) {
                if percent <= prev {
                    return Err(bad(format!("step {}: {percent}% is not above the previous step's {prev}%", i + 1)));
                }
            }
            steps.push(Step { percent, soak_secs });
        }
        Ok(Schedule { steps })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}%", s.percent)?;
            if let Some(d) = s.soak_secs {
                write!(f, ":{}", format_duration(d))?;
            }
        }
        Ok(())
    }
}

/// What the schedule should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleAction {
    /// Stay at the current step (soaking, or waiting for enough reports).
    Hold,
    /// Raise the share to the step at this index.
    Advance(usize),
    /// The last step is reached; nothing more to do.
    Complete,
    /// A rule tripped: halt the rollout.
    Halt,
}

/// The schedule's next move, from the current step, how long it has soaked, and the health
/// verdict. A tripped rule halts at any time; advancing needs both the soak time and a healthy
/// verdict (waiting for reports holds the step, it never passes it).
pub fn next_action(schedule: &Schedule, step: usize, soaked_secs: u64, verdict: Verdict) -> ScheduleAction {
    if verdict == Verdict::Tripped {
        return ScheduleAction::Halt;
    }
    let Some(current) = schedule.steps.get(step) else { return ScheduleAction::Complete };
    if step + 1 >= schedule.steps.len() {
        return ScheduleAction::Complete;
    }
    let soaked = current.soak_secs.is_none_or(|s| soaked_secs >= s);
    if soaked && verdict == Verdict::Healthy {
        ScheduleAction::Advance(step + 1)
    } else {
        ScheduleAction::Hold
    }
}

// ---- statistics ----

/// A proportion with its Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Successes / trials (0 when there are no trials).
    pub rate: f64,
    pub lower: f64,
    pub upper: f64,
    pub successes: u64,
    pub trials: u64,
}

/// The Wilson score interval for `successes` out of `trials` at `z` standard deviations
/// (1.96 for 95 %). With no trials nothing is known: the interval is [0, 1].
pub fn wilson(successes: u64, trials: u64, z: f64) -> Interval {
    if trials == 0 {
        return Interval { rate: 0.0, lower: 0.0, upper: 1.0, successes: 0, trials: 0 };
    }
    let successes = successes.min(trials);
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    // Clamp: rounding must not put a bound past the observed rate or outside [0, 1].
    let lower = (centre - half).clamp(0.0, p);
    let upper = (centre + half).clamp(p, 1.0);
    Interval { rate: p, lower, upper, successes, trials }
}

// ---- rules ----

/// Counts reported for one release (over a time window, optionally one platform).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCounts {
    pub sessions: u64,
    pub crashed_sessions: u64,
    pub clients: u64,
    pub crashed_clients: u64,
    pub installs: u64,
    pub failed_installs: u64,
}

/// What a rule measures. Every metric is compared as a "good" proportion (crash-free
/// sessions, crash-free clients, successful installs), so one test fits all three; the
/// install metric is shown to people as its failure rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    CrashFreeSessions,
    CrashFreeClients,
    InstallFailureRate,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::CrashFreeSessions, Metric::CrashFreeClients, Metric::InstallFailureRate];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrashFreeSessions => "crash_free_sessions",
            Self::CrashFreeClients => "crash_free_clients",
            Self::InstallFailureRate => "install_failure_rate",
        }
    }

    /// (good, total) for this metric.
    pub fn good_of(self, c: &HealthCounts) -> (u64, u64) {
        let (total, bad) = match self {
            Self::CrashFreeSessions => (c.sessions, c.crashed_sessions),
            Self::CrashFreeClients => (c.clients, c.crashed_clients),
            Self::InstallFailureRate => (c.installs, c.failed_installs),
        };
        (total.saturating_sub(bad), total)
    }
}

impl FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Metric::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown metric {s:?}: crash_free_sessions, crash_free_clients or install_failure_rate"))
    }
}

/// One halt rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub metric: Metric,
    /// Reports the new release needs before this rule can pass or trip.
    pub min_sample: u64,
    /// How much worse than the baseline's lower bound is tolerated, as a proportion
    /// (0.005 = half a percentage point).
    pub tolerance: f64,
}

/// An app's halt rules, with the confidence they are judged at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Standard deviations for the Wilson intervals (1.96 ≈ 95 % two-sided).
    #[serde(default = "default_z")]
    pub z: f64,
    pub rules: Vec<Rule>,
}

fn default_z() -> f64 {
    1.96
}

impl Default for Rules {
    /// Crash-free sessions (200 sessions, 0.5 points), crash-free clients (100 clients,
    /// 1 point), install failures (50 installs, 2 points), at 95 %.
    fn default() -> Self {
        Rules {
            z: default_z(),
            rules: vec![
                Rule { metric: Metric::CrashFreeSessions, min_sample: 200, tolerance: 0.005 },
                Rule { metric: Metric::CrashFreeClients, min_sample: 100, tolerance: 0.01 },
                Rule { metric: Metric::InstallFailureRate, min_sample: 50, tolerance: 0.02 },
            ],
        }
    }
}

impl Rules {
    /// Every problem with a rule set, not just the first.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(self.z.is_finite() && (0.5..=5.0).contains(&self.z)) {
            out.push(format!("z must be from 0.5 to 5 (1.96 is 95 %), not {}", self.z));
        }
        if self.rules.len() > 16 {
            out.push("at most 16 rules".into());
        }
        for (i, r) in self.rules.iter().enumerate() {
            if !(r.tolerance.is_finite() && (0.0..=1.0).contains(&r.tolerance)) {
                out.push(format!("rule {} ({}): tolerance must be from 0 to 1, not {}", i + 1, r.metric.as_str(), r.tolerance));
            }
            if r.min_sample == 0 {
                out.push(format!("rule {} ({}): min_sample must be at least 1", i + 1, r.metric.as_str()));
            } else if r.min_sample > i64::MAX as u64 {
                // Counts are stored as 64-bit signed integers: no count of reports gets there.
                out.push(format!("rule {} ({}): min_sample must be at most {}", i + 1, r.metric.as_str(), i64::MAX));
            }
        }
        out
    }
}

/// A rule's state after an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleState {
    /// Neither release has any report of this metric: the rule is left out.
    NoData,
    /// Fewer reports than the minimum sample.
    Waiting,
    Healthy,
    Tripped,
}

/// One rule's evidence: both intervals, the threshold and how far from tripping.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RuleOutcome {
    pub rule: Rule,
    pub state: RuleState,
    pub new: Interval,
    pub baseline: Interval,
    /// The baseline's lower bound minus the tolerance: the new upper bound must stay at or
    /// above it.
    pub threshold: f64,
    /// `new.upper - threshold`: negative means tripped; the smallest is closest to tripping.
    pub margin: f64,
}

/// The verdict over all rules: any trip halts; any wait holds; else healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Waiting,
    Healthy,
    Tripped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub verdict: Verdict,
    pub outcomes: Vec<RuleOutcome>,
}

impl HealthReport {
    /// The rule that tripped, or else the one closest to tripping among those with enough
    /// reports, or else the one furthest from its minimum sample.
    pub fn closest(&self) -> Option<&RuleOutcome> {
        let judged = self.outcomes.iter().filter(|o| matches!(o.state, RuleState::Healthy | RuleState::Tripped));
        judged.min_by(|a, b| a.margin.total_cmp(&b.margin)).or_else(|| {
            self.outcomes
                .iter()
                .filter(|o| o.state == RuleState::Waiting)
                .max_by_key(|o| o.rule.min_sample.saturating_sub(o.new.trials))
                .or_else(|| self.outcomes.first())
        })
    }
}

/// Judges one rule.
pub fn judge(rule: &Rule, z: f64, new: &HealthCounts, baseline: &HealthCounts) -> RuleOutcome {
    let (ng, nt) = rule.metric.good_of(new);
    let (bg, bt) = rule.metric.good_of(baseline);
    let new_i = wilson(ng, nt, z);
    let base_i = wilson(bg, bt, z);
    let threshold = base_i.lower - rule.tolerance;
    let margin = new_i.upper - threshold;
    let state = if nt == 0 && bt == 0 {
        RuleState::NoData
    } else if nt < rule.min_sample {
        RuleState::Waiting
    } else if new_i.upper < threshold {
        RuleState::Tripped
    } else {
        RuleState::Healthy
    };
    RuleOutcome { rule: *rule, state, new: new_i, baseline: base_i, threshold, margin }
}

/// Judges every rule. No rules at all is `Healthy` (the schedule runs on time alone); rules
/// that all lack data are `Waiting` (silence is not health).
pub fn evaluate(rules: &Rules, new: &HealthCounts, baseline: &HealthCounts) -> HealthReport {
    let outcomes: Vec<RuleOutcome> = rules.rules.iter().map(|r| judge(r, rules.z, new, baseline)).collect();
    let judged = outcomes.iter().any(|o| matches!(o.state, RuleState::Healthy | RuleState::Tripped));
    let verdict = if outcomes.iter().any(|o| o.state == RuleState::Tripped) {
        Verdict::Tripped
    } else if outcomes.iter().any(|o| o.state == RuleState::Waiting) || (!outcomes.is_empty() && !judged) {
        Verdict::Waiting
    } else {
        Verdict::Healthy
    };
    HealthReport { verdict, outcomes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pct(s: &str) -> Percent {
        s.parse().unwrap()
    }

    #[test]
    fn schedules_parse_and_print() {
        let s: Schedule = "1%:1h,10%:6h,50%:1d,100%".parse().unwrap();
        assert_eq!(
            s.steps(),
            &[
                Step { percent: pct("1"), soak_secs: Some(3600) },
                Step { percent: pct("10"), soak_secs: Some(6 * 3600) },
                Step { percent: pct("50"), soak_secs: Some(86400) },
                Step { percent: pct("100"), soak_secs: None },
            ]
        );
        assert_eq!(s.to_string(), "1%:1h,10%:6h,50%:1d,100%");
        let s: Schedule = " 0.5%:90s , 25:2m,100%:1s".parse().unwrap();
        assert_eq!(s.to_string(), "0.50%:90s,25%:2m,100%:1s");
        assert_eq!(s.step_for(pct("0")), None);
        assert_eq!(s.step_for(pct("0.5")), Some(0));
        assert_eq!(s.step_for(pct("30")), Some(1));
        assert_eq!(s.step_for(pct("100")), Some(2));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (input, says) in [
            ("", "no steps"),
            ("10%:1h,5%", "not above"),
            ("10%:1h,10%", "not above"),
            ("1%,100%", "needs a soak"),
            ("1%:1w,100%", "not a duration"),
            ("1%:0s,100%", "not a duration"),
            ("1%:h,100%", "not a duration"),
            ("101%", "not a percentage"),
            ("0%:1h,100%", "above 0%"),
            ("abc", "not a percentage"),
            ("1%:1h,,100%", "not a percentage"),
        ] {
            let e = input.parse::<Schedule>().unwrap_err();
            assert!(e.to_string().contains(says), "{input:?}: {e}");
        }
        let many = (1..=21).map(|i| format!("{i}%:1s")).collect::<Vec<_>>().join(",");
        assert!(many.parse::<Schedule>().unwrap_err().to_string().contains("at most"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30));
        assert_eq!(parse_duration("15m"), Some(900));
        assert_eq!(parse_duration("6h"), Some(21600));
        assert_eq!(parse_duration("2d"), Some(172800));
        for bad in ["", "s", "1", "1x", "-1s", "1.5h", "9999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(90), "90s");
        assert_eq!(format_duration(120), "2m");
        assert_eq!(format_duration(0), "0s");
    }

    #[test]
    fn the_schedule_advances_only_when_soaked_and_healthy() {
        let s: Schedule = "10%:60s,50%:60s,100%".parse().unwrap();
        use ScheduleAction::*;
        use Verdict::*;
        for (step, soaked, verdict, want) in [
            (0, 0, Healthy, Hold),
            (0, 59, Healthy, Hold),
            (0, 60, Healthy, Advance(1)),
            (0, 600, Waiting, Hold),
            (0, 0, Tripped, Halt),
            (1, 60, Healthy, Advance(2)),
            (2, 0, Healthy, Complete),
            (2, 0, Tripped, Halt),
            (7, 0, Healthy, Complete),
        ] {
            assert_eq!(next_action(&s, step, soaked, verdict), want, "step {step} soaked {soaked} {verdict:?}");
        }
    }

    #[test]
    fn wilson_matches_known_values() {
        // 0 of 0: nothing known.
        let i = wilson(0, 0, 1.96);
        assert_eq!((i.lower, i.upper), (0.0, 1.0));
        // 95 of 100 at 95 %: [0.8882, 0.9785] (the standard textbook value).
        let i = wilson(95, 100, 1.96);
        assert!((i.lower - 0.8882).abs() < 1e-3 && (i.upper - 0.9785).abs() < 1e-3, "{i:?}");
        // All successes: the upper bound is 1, the lower below it.
        let i = wilson(10, 10, 1.96);
        assert_eq!(i.upper, 1.0);
        assert!(i.lower < 1.0 && i.lower > 0.6);
    }

    fn counts(sessions: u64, crashed: u64) -> HealthCounts {
        HealthCounts { sessions, crashed_sessions: crashed, ..Default::default() }
    }

    fn sessions_only(min_sample: u64, tolerance: f64) -> Rules {
        Rules { z: 1.96, rules: vec![Rule { metric: Metric::CrashFreeSessions, min_sample, tolerance }] }
    }

    #[test]
    fn a_crash_spike_trips_and_equal_health_passes() {
        let rules = sessions_only(200, 0.005);
        let baseline = counts(20_000, 100); // 0.5 %
        assert_eq!(evaluate(&rules, &counts(2_000, 100), &baseline).verdict, Verdict::Tripped); // 5 %
        assert_eq!(evaluate(&rules, &counts(2_000, 10), &baseline).verdict, Verdict::Healthy); // 0.5 %
                                                                                               // Too few reports to tell: waiting, however bad they look.
        assert_eq!(evaluate(&rules, &counts(20, 10), &baseline).verdict, Verdict::Waiting);
        // Small but sufficient samples with one unlucky crash do not trip.
        assert_eq!(evaluate(&rules, &counts(200, 2), &baseline).verdict, Verdict::Healthy);
        // No baseline reports: its interval is [0, 1], so nothing can trip.
        assert_eq!(evaluate(&rules, &counts(2_000, 1_000), &counts(0, 0)).verdict, Verdict::Healthy);
        // Nobody reports anything: waiting, not healthy.
        let r = evaluate(&rules, &counts(0, 0), &counts(0, 0));
        assert_eq!((r.verdict, r.outcomes[0].state), (Verdict::Waiting, RuleState::NoData));
        // No rules: healthy.
        assert_eq!(evaluate(&Rules { z: 1.96, rules: vec![] }, &counts(0, 0), &baseline).verdict, Verdict::Healthy);
    }

    #[test]
    fn install_failures_and_clients_are_judged_as_good_proportions() {
        let rules = Rules { z: 1.96, rules: vec![Rule { metric: Metric::InstallFailureRate, min_sample: 50, tolerance: 0.02 }] };
        let base = HealthCounts { installs: 5_000, failed_installs: 50, ..Default::default() };
        let bad = HealthCounts { installs: 500, failed_installs: 100, ..Default::default() };
        let report = evaluate(&rules, &bad, &base);
        assert_eq!(report.verdict, Verdict::Tripped);
        assert!((report.outcomes[0].new.rate - 0.8).abs() < 1e-9);
        let rules = Rules { z: 1.96, rules: vec![Rule { metric: Metric::CrashFreeClients, min_sample: 10, tolerance: 0.0 }] };
        let base = HealthCounts { clients: 1_000, crashed_clients: 0, ..Default::default() };
        let new = HealthCounts { clients: 100, crashed_clients: 30, ..Default::default() };
        assert_eq!(evaluate(&rules, &new, &base).verdict, Verdict::Tripped);
        // More crashes than sessions (counts from different buckets) cannot go negative.
        let weird = HealthCounts { sessions: 5, crashed_sessions: 9, ..Default::default() };
        assert_eq!(Metric::CrashFreeSessions.good_of(&weird), (0, 5));
    }

    #[test]
    fn closest_rule_is_the_tripped_one_or_the_smallest_margin() {
        let rules = Rules::default();
        let new = HealthCounts { sessions: 2_000, crashed_sessions: 100, clients: 20, crashed_clients: 0, installs: 0, failed_installs: 0 };
        let base = HealthCounts { sessions: 20_000, crashed_sessions: 100, clients: 2_000, crashed_clients: 10, ..Default::default() };
        let r = evaluate(&rules, &new, &base);
        assert_eq!(r.closest().unwrap().rule.metric, Metric::CrashFreeSessions);
        assert_eq!(r.closest().unwrap().state, RuleState::Tripped);
        let r = evaluate(&rules, &HealthCounts::default(), &base);
        assert_eq!(r.verdict, Verdict::Waiting);
        assert_eq!(r.closest().unwrap().rule.metric, Metric::CrashFreeSessions, "furthest from its sample");
        // A metric nobody reports (installs) is left out; the others decide.
        let healthy_new = HealthCounts { sessions: 2_000, crashed_sessions: 10, clients: 400, crashed_clients: 2, ..Default::default() };
        let r = evaluate(&rules, &healthy_new, &base);
        assert_eq!(r.verdict, Verdict::Healthy);
        assert_eq!(r.outcomes[2].state, RuleState::NoData);
    }

    #[test]
    fn rule_problems_are_all_reported() {
        let r = Rules { z: 0.0, rules: vec![Rule { metric: Metric::CrashFreeClients, min_sample: 0, tolerance: 2.0 }] };
        assert_eq!(r.problems().len(), 3, "{:?}", r.problems());
        let huge = |min_sample| Rules { z: 1.96, rules: vec![Rule { metric: Metric::CrashFreeClients, min_sample, tolerance: 0.01 }] };
        assert!(huge(i64::MAX as u64).problems().is_empty());
        assert_eq!(huge(i64::MAX as u64 + 1).problems().len(), 1);
        assert!(Rules::default().problems().is_empty());
        let json = serde_json::to_value(Rules::default()).unwrap();
        assert_eq!(json["rules"][0]["metric"], "crash_free_sessions");
        assert_eq!(serde_json::from_value::<Rules>(json).unwrap(), Rules::default());
    }

    proptest! {
        #[test]
        fn wilson_bounds_hold_the_rate(trials in 0u64..1_000_000, frac in 0.0f64..=1.0, z in 0.5f64..5.0) {
            let successes = (trials as f64 * frac) as u64;
            let i = wilson(successes, trials, z);
            prop_assert!(0.0 <= i.lower && i.lower <= i.rate.max(i.lower) && i.upper <= 1.0);
            if trials > 0 {
                prop_assert!(i.lower <= i.rate && i.rate <= i.upper);
            }
        }

        #[test]
        fn more_data_narrows_the_interval(successes in 0u64..1000, extra in 0u64..1000, k in 2u64..50) {
            let trials = successes + extra;
            prop_assume!(trials > 0);
            let a = wilson(successes, trials, 1.96);
            let b = wilson(successes * k, trials * k, 1.96);
            prop_assert!(b.upper - b.lower <= a.upper - a.lower + 1e-12);
        }

        /// A new release at least as healthy as its baseline never trips, whatever the sizes.
        #[test]
        fn no_worse_never_trips(base_n in 0u64..100_000, base_bad in 0.0f64..0.5, new_n in 0u64..100_000, better in 0.0f64..=1.0, tol in 0.0f64..0.05) {
            let base_crashed = (base_n as f64 * base_bad) as u64;
            let base = counts(base_n, base_crashed);
            // At most the baseline's observed crash rate: new_crashed / new_n <= base_crashed / base_n.
            let new_crashed = if base_n == 0 { 0 } else { (new_n as u128 * base_crashed as u128 / base_n as u128) as u64 };
            let new = counts(new_n, (new_crashed as f64 * better) as u64);
            let r = evaluate(&sessions_only(1, tol), &new, &base);
            prop_assert_ne!(r.verdict, Verdict::Tripped, "{:?}", r.outcomes[0]);
        }

        /// Against a naive model: tripped exactly when new.upper < base.lower - tolerance and
        /// the sample is reached.
        #[test]
        fn judge_agrees_with_the_definition(ns in 0u64..5000, nb in 0u64..5000, bs in 0u64..5000, bb in 0u64..5000, min in 1u64..3000, tol in 0.0f64..0.1) {
            let new = counts(ns, nb.min(ns));
            let base = counts(bs, bb.min(bs));
            let o = judge(&Rule { metric: Metric::CrashFreeSessions, min_sample: min, tolerance: tol }, 1.96, &new, &base);
            let ni = wilson(ns - nb.min(ns), ns, 1.96);
            let bi = wilson(bs - bb.min(bs), bs, 1.96);
            let want = if ns == 0 && bs == 0 { RuleState::NoData } else if ns < min { RuleState::Waiting } else if ni.upper < bi.lower - tol { RuleState::Tripped } else { RuleState::Healthy };
            prop_assert_eq!(o.state, want);
        }

        #[test]
        fn schedules_round_trip(steps in proptest::collection::vec((1u32..=10_000, 1u64..200_000), 1..8)) {
            let mut bps: Vec<u32> = steps.iter().map(|s| s.0).collect();
            bps.sort_unstable();
            bps.dedup();
            let text = bps.iter().enumerate().map(|(i, &bp)| {
                let p = Percent::from_basis_points(bp).unwrap();
                if i + 1 == bps.len() { format!("{p}%") } else { format!("{p}%:{}s", steps[i].1) }
            }).collect::<Vec<_>>().join(",");
            let s: Schedule = text.parse().unwrap();
            let again: Schedule = s.to_string().parse().unwrap();
            prop_assert_eq!(s, again);
        }

        #[test]
        fn schedule_parsing_never_panics(s in "\\PC{0,60}") {
            let _ = s.parse::<Schedule>();
        }
    }
}
