//! Staged rollouts: the share of clients offered a release matches the percentage, raising it
//! keeps every client that had the offer, pause and resume work, and no client id means only
//! fully rolled-out releases.

use crate::harness::*;

fn offered(server: &Server, http: &reqwest::blocking::Client, clients: &[String]) -> Vec<bool> {
    clients
        .iter()
        .map(|c| {
            let r = http.get(server.url(&format!("/v1/update/demo/stable/linux-x86_64?current=1.0.0&client={c}"))).send().unwrap();
            match r.status().as_u16() {
                200 => true,
                204 => false,
                s => panic!("unexpected status {s}"),
            }
        })
        .collect()
}

#[test]
fn rollout_share_is_accurate_and_raising_it_keeps_every_offer() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let rel = publish(&server, dir.path(), "demo", "1.1.0", "linux-x86_64", &bytes(4096, 5), &["--rollout", "10"]);
    assert_eq!(rel["rollout_percent"], 10.0);
    let http = http();
    let clients: Vec<String> = (0..2000).map(|i| format!("client-{i:05}")).collect();
    let at10 = offered(&server, &http, &clients);
    // Buckets depend on the release's random salt, so the counts are binomial: 5 standard
    // deviations either side (σ ≈ 13 at 10 %, 22 at 50 %) fail one run in millions, and still
    // catch a bucket function that is off by a few points. (±50 at 50 % was 2.2 σ: it failed
    // about one run in thirty.)
    let n10 = at10.iter().filter(|x| **x).count();
    assert!((133..=267).contains(&n10), "10% of 2000 should be 200 ± 67, got {n10}");

    server.cli(&["rollout", "set", "demo", "1.1.0", "--percent", "50"]).ok();
    let at50 = offered(&server, &http, &clients);
    let n50 = at50.iter().filter(|x| **x).count();
    assert!((888..=1112).contains(&n50), "50% of 2000 should be 1000 ± 112, got {n50}");
    for (i, (a, b)) in at10.iter().zip(&at50).enumerate() {
        assert!(!a || *b, "client {i} lost its offer when the rollout went from 10% to 50%");
    }

    // No client id: only fully rolled-out releases are offered.
    assert_eq!(http.get(server.url("/v1/update/demo/stable/linux-x86_64?current=1.0.0")).send().unwrap().status(), 204);

    // Pause withdraws the offer from everyone; resume restores exactly the same set.
    server.cli(&["rollout", "pause", "demo", "1.1.0"]).ok();
    assert!(offered(&server, &http, &clients[..200]).iter().all(|x| !x));
    server.cli(&["rollout", "resume", "demo", "1.1.0"]).ok();
    assert_eq!(offered(&server, &http, &clients[..200]), at50[..200].to_vec());

    // The same decision is signed into the TUF targets (our client decides from it).
    let targets = latest_targets(&server, "demo");
    let custom = &targets["signed"]["targets"]["1.1.0/linux-x86_64/demo-1.1.0-linux-x86_64.bin"]["custom"];
    assert_eq!(custom["rollout"]["basis_points"], 5000);
    assert_eq!(custom["rollout"]["paused"], false);
    let app: updraft_core::AppId = "demo".parse().unwrap();
    let salt = custom["rollout"]["salt"].as_str().unwrap();
    let share = updraft_core::Percent::from_basis_points(5000).unwrap();
    for (c, was_offered) in clients.iter().zip(&at50).take(500) {
        assert_eq!(updraft_core::rollout::admits(&app, salt, c, share), *was_offered, "server and core disagree for {c}");
    }
}
