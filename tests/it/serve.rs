//! `vapictl serve`: the controller, run as the real binary against the stand-in — loop, drift,
//! gates, readiness, metrics, the trigger, shutdown, and two replicas on one database.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use standin::vapi::FaultConfig;
use vapictl::store::{LeaderAttempt, LockHolder};

use crate::both_backends;
use crate::common::*;

/// Long enough for a loaded machine; every wait polls and ends as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(90);

/// A running `vapictl serve` with its stderr collected.
struct Serve {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `vapictl serve SPEC --listen 127.0.0.1:0 EXTRA…` (with `--interval 1s` and
    /// `--lease-ttl 3` unless EXTRA has its own) and waits until it listens.
    fn start(w: &World, spec: &std::path::Path, extra: &[&str]) -> Serve {
        Serve::start_with(w, spec, extra, &[])
    }

    fn start_with(
        w: &World,
        spec: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Serve {
        let mut c = w.command();
        c.args(["serve", spec.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("VAPICTL_SERVE_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Short defaults keep the tests fast; a test may give its own.
        for (flag, value) in [("--interval", "1s"), ("--lease-ttl", "3")] {
            if !extra.contains(&flag) {
                c.args([flag, value]);
            }
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let started = Instant::now();
        let addr = loop {
            let text = log.lock().unwrap().clone();
            if let Some(rest) = text.split("listening on http://").nth(1) {
                break rest
                    .split(|c: char| c.is_whitespace() || c == '"')
                    .next()
                    .unwrap()
                    .to_owned();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve exited with {status} before listening:\n{text}");
            }
            assert!(
                started.elapsed() < PATIENCE,
                "serve never listened:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Serve { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// One HTTP/1.1 request; (status, body).
    fn http(&self, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
        http(&self.addr, method, path, headers)
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.http("GET", path, &[])
    }

    /// The value of a sample of `/metrics`, as `name{labels}` is written there.
    fn metric(&self, sample: &str) -> f64 {
        let (code, text) = self.get("/metrics");
        assert_eq!(code, 200, "{text}");
        metric_in(&text, sample).unwrap_or_else(|| panic!("no `{sample}` in:\n{text}"))
    }

    fn reconciles(&self) -> f64 {
        ["success", "error", "refused"]
            .iter()
            .map(|r| self.metric(&format!("vapictl_reconcile_total{{result=\"{r}\"}}")))
            .sum()
    }

    fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    /// Waits for the process to exit; its exit code.
    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                started.elapsed() < within,
                "serve still running after {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http(addr: &str, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {raw}"));
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    // Chunked bodies: keep the chunks' text (the sizes are lines of hex).
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (code, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

fn metric_in(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let value = l.strip_prefix(sample)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Polls `check` until it holds; fails with `what` and the log after [`PATIENCE`].
#[track_caller]
fn eventually(s: &Serve, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < PATIENCE,
            "never happened: {what}\n--- serve's log\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const N1: &str = "+14155550101";
const N2: &str = "+14155550102";

fn in_vapi(w: &World, number: &str) -> Vec<serde_json::Value> {
    w.vapi.find_by_number(number)
}

/// POSTs to `/phone-number` that created a number, by number.
fn posts_by_number(w: &World) -> std::collections::BTreeMap<String, usize> {
    let mut by = std::collections::BTreeMap::new();
    for r in w.vapi.request_log() {
        if r.method == "POST"
            && r.path.starts_with("/phone-number")
            && r.status.is_some_and(|s| s < 300)
        {
            let n = r
                .body
                .as_ref()
                .and_then(|b| b["number"].as_str())
                .unwrap_or("?")
                .to_owned();
            *by.entry(n).or_default() += 1;
        }
    }
    by
}

both_backends!(a_spec_change_is_applied_within_two_intervals, |w: World| {
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let s = Serve::start(&w, &spec, &[]);
    eventually(&s, "the first number is created", || {
        in_vapi(&w, N1).len() == 1
    });
    eventually(&s, "ready after a reconcile", || s.get("/readyz").0 == 200);
    // Count reconciles rather than seconds: the change lands in the first or second one
    // that starts after the edit (one may be running while the file is written).
    let before = s.reconciles();
    w.write(
        &w.spec()
            .with(Entry::new(N1, "Main"))
            .with(Entry::new(N2, "Second")),
    );
    eventually(&s, "the new number is created", || {
        in_vapi(&w, N2).len() == 1
    });
    let after = s.reconciles();
    assert!(after - before <= 2.0, "took {} reconciles", after - before);
    assert_eq!(w.recorded().rows.len(), 2);
    eventually(&s, "the applied changes are counted", || {
        s.metric("vapictl_changes_applied_total{action=\"create\"}") == 2.0
    });
    assert_eq!(s.metric("vapictl_leader"), 1.0);
    assert!(s.metric("vapictl_last_success_timestamp_seconds") > 1.7e9);
    let log = s.log();
    assert!(log.contains("reconcile"), "{log}");
    assert!(
        !log.contains(TOKEN) && !log.contains(N1),
        "secret or number in the log:\n{log}"
    );
});

both_backends!(drift_made_in_vapi_is_healed, |w: World| {
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let s = Serve::start(&w, &spec, &[]);
    eventually(&s, "created", || in_vapi(&w, N1).len() == 1);
    let id = in_vapi(&w, N1)[0]["id"].as_str().unwrap().to_owned();
    w.vapi.patch_number(&id, json!({"name": "Edited by hand"}));
    eventually(&s, "healed", || in_vapi(&w, N1)[0]["name"] == "Main");
    eventually(&s, "the update is counted", || {
        s.metric("vapictl_changes_applied_total{action=\"update\"}") >= 1.0
    });
});

#[test]
fn drift_only_reports_drift_and_changes_nothing() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    assert_code(&w.apply(&spec), 0);
    let id = in_vapi(&w, N1)[0]["id"].as_str().unwrap().to_owned();
    w.vapi.patch_number(&id, json!({"name": "Edited by hand"}));
    w.vapi.reset_log();
    let s = Serve::start(&w, &spec, &["--drift-only"]);
    eventually(&s, "the drift is reported", || {
        s.metric("vapictl_drift_findings{cause=\"vapi_edited_out_of_band\"}") == 1.0
    });
    // Let a second reconcile pass too: still nothing changed.
    let seen = s.reconciles();
    eventually(&s, "another reconcile", || s.reconciles() > seen);
    assert_eq!(in_vapi(&w, N1)[0]["name"], "Edited by hand");
    assert_eq!(w.vapi.mutating_calls(), 0);
    assert_eq!(
        s.metric("vapictl_reconcile_total{result=\"success\"}"),
        s.reconciles()
    );
}

both_backends!(
    a_deletion_gate_refusal_shows_in_metrics_and_changes_nothing,
    |w: World| {
        let numbers: Vec<String> = (0..10).map(|i| format!("+1415555{:04}", 200 + i)).collect();
        let full = numbers
            .iter()
            .fold(w.spec(), |s, n| s.with(Entry::new(n, "Line")));
        let spec = w.write(&full);
        assert_code(&w.apply(&spec), 0);
        // Nine entries vanish from the spec: above the thresholds, never auto-confirmed.
        w.write(&w.spec().with(Entry::new(&numbers[0], "Line")));
        w.vapi.reset_log();
        let s = Serve::start(&w, &spec, &[]);
        eventually(&s, "the refusal is counted", || {
            s.metric("vapictl_reconcile_total{result=\"refused\"}") >= 1.0
        });
        assert_eq!(s.metric("vapictl_owners{state=\"refused\"}"), 1.0);
        assert_eq!(
            s.metric("vapictl_drift_findings{cause=\"removed_from_spec\"}"),
            9.0
        );
        assert_eq!(w.vapi.mutating_calls(), 0);
        assert_eq!(w.vapi.numbers().len(), 10);
        assert_eq!(w.recorded().rows.len(), 10);
        assert!(
            s.log().contains("refusing to delete 9 of 10"),
            "{}",
            s.log()
        );
    }
);

#[test]
fn readyz_is_503_while_vapi_is_unreachable_and_200_after() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let s = Serve::start(&w, &spec, &[]);
    eventually(&s, "ready", || s.get("/readyz").0 == 200);
    w.vapi.set_faults(FaultConfig {
        p_server_error: 1.0,
        scope: standin::vapi::FaultScope::All,
        ..FaultConfig::default()
    });
    eventually(&s, "not ready, naming Vapi", || {
        let (code, why) = s.get("/readyz");
        code == 503 && why.contains("Vapi")
    });
    assert_eq!(s.get("/healthz").0, 200, "the loop is alive all along");
    assert!(s.metric("vapictl_vapi_requests_total{method=\"GET\",status=\"503\"}") >= 1.0);
    w.vapi.set_faults(FaultConfig::default());
    eventually(&s, "ready again", || s.get("/readyz").0 == 200);
}

#[test]
fn metrics_parse_as_prometheus_text_with_the_contract_names() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let s = Serve::start(&w, &spec, &[]);
    eventually(&s, "a reconcile", || s.reconciles() >= 1.0);
    let (code, text) = s.get("/metrics");
    assert_eq!(code, 200);
    let mut families = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(meta) = line.strip_prefix("# ") {
            let mut words = meta.split_whitespace();
            let kind = words.next().unwrap();
            assert!(["TYPE", "HELP", "UNIT", "EOF"].contains(&kind), "{line}");
            if kind == "TYPE" {
                families.insert(words.next().unwrap().to_owned());
            }
            continue;
        }
        // name{label="value",…} value
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("value of {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if name_end < series.len() {
            let labels = series[name_end..]
                .strip_prefix('{')
                .unwrap()
                .strip_suffix('}');
            for pair in labels.unwrap_or_else(|| panic!("{line}")).split(',') {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
                // No phone number or secret in any label.
                assert!(!v.contains("+1") && !v.contains("CANARY"), "{line}");
            }
        }
    }
    assert!(text.ends_with("# EOF\n"));
    for family in [
        "vapictl_reconcile",
        "vapictl_reconcile_duration_seconds",
        "vapictl_changes_applied",
        "vapictl_drift_findings",
        "vapictl_managed_numbers",
        "vapictl_owners",
        "vapictl_vapi_requests",
        "vapictl_leader",
        "vapictl_last_success_timestamp_seconds",
    ] {
        assert!(families.contains(family), "no family {family} in:\n{text}");
    }
    assert!(metric_in(&text, "vapictl_reconcile_duration_seconds_count").unwrap() >= 1.0);
    assert!(
        metric_in(
            &text,
            "vapictl_vapi_requests_total{method=\"GET\",status=\"200\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert!(metric_in(&text, "vapictl_managed_numbers").is_some());
}

#[test]
fn post_reconcile_needs_the_token() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    // Without VAPICTL_SERVE_TOKEN the trigger is off.
    let s = Serve::start(&w, &spec, &["--interval", "1h"]);
    let (code, body) = s.http("POST", "/reconcile", &["Authorization: Bearer anything"]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("VAPICTL_SERVE_TOKEN"), "{body}");
    drop(s);

    let token = "trigger-token-0123456789";
    let s = Serve::start_with(
        &w,
        &spec,
        &["--interval", "1h"],
        &[("VAPICTL_SERVE_TOKEN", token)],
    );
    eventually(&s, "leading, first reconcile done", || {
        s.reconciles() >= 1.0
    });
    assert_eq!(s.http("POST", "/reconcile", &[]).0, 401);
    assert_eq!(
        s.http("POST", "/reconcile", &["Authorization: Bearer wrong"])
            .0,
        401
    );
    assert_eq!(s.get("/reconcile").0, 405);
    let before = s.reconciles();
    let auth = format!("Authorization: Bearer {token}");
    let (code, body) = s.http("POST", "/reconcile", &[&auth]);
    assert_eq!(code, 202, "{body}");
    eventually(&s, "the triggered reconcile ran", || {
        s.reconciles() > before
    });
    assert!(!s.log().contains(token), "the token is in the log");
}

both_backends!(
    sigterm_exits_0_promptly_with_the_lease_released,
    |w: World| {
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
        let mut s = Serve::start(&w, &spec, &[]);
        eventually(&s, "leading and reconciled", || {
            s.metric("vapictl_leader") == 1.0 && s.reconciles() >= 1.0
        });
        s.signal("TERM");
        assert_eq!(s.wait_exit(Duration::from_secs(30)), Some(0), "{}", s.log());
        // Released: the row is expired (its epoch kept), so the next replica leads at once.
        let store = w.store();
        let lease = w
            .block_on(store.try_lead(&LockHolder::this_process("next"), Duration::from_secs(3)))
            .unwrap();
        let LeaderAttempt::Leading(lease) = lease else {
            panic!("the lease was not released: {lease:?}\n{}", s.log());
        };
        assert!(lease.epoch() >= 2, "epochs grow: {}", lease.epoch());
        w.block_on(lease.release()).unwrap();
    }
);

both_backends!(
    two_replicas_one_leader_and_a_sigkilled_leader_is_replaced_without_duplicates,
    |w: World| {
        let numbers: Vec<String> = (0..40).map(|i| format!("+1415555{:04}", 300 + i)).collect();
        let spec = w.write(
            &numbers
                .iter()
                .fold(w.spec(), |s, n| s.with(Entry::new(n, "Line"))),
        );
        // Slow Vapi down so that the leader is killed with work left.
        w.vapi.set_faults(FaultConfig {
            latency_ms: 100,
            ..FaultConfig::default()
        });
        let mut a = Serve::start(&w, &spec, &["--parallelism", "2"]);
        eventually(&a, "the first replica leads", || {
            a.metric("vapictl_leader") == 1.0
        });
        let b = Serve::start(&w, &spec, &["--parallelism", "2"]);
        // Exactly one leader while both run; the follower is ready too.
        eventually(&b, "the second replica follows and is ready", || {
            b.get("/readyz").0 == 200
        });
        for _ in 0..10 {
            assert_eq!(a.metric("vapictl_leader"), 1.0);
            assert_eq!(b.metric("vapictl_leader"), 0.0);
            std::thread::sleep(Duration::from_millis(50));
        }
        let (leader, follower) = (&mut a, &b);
        eventually(leader, "the leader created some numbers", || {
            w.vapi.numbers().len() >= 3
        });
        leader.child.kill().unwrap(); // SIGKILL
        leader.child.wait().unwrap();
        assert!(
            w.vapi.numbers().len() < numbers.len(),
            "killed too late to test a takeover"
        );
        eventually(follower, "the other replica leads", || {
            follower.metric("vapictl_leader") == 1.0
        });
        eventually(follower, "converged", || {
            w.recorded().rows.len() == numbers.len() && w.vapi.numbers().len() == numbers.len()
        });
        // Requests the stand-in carried out (one cut off by the kill may have been dropped
        // unanswered, and then was never created).
        let posts = posts_by_number(&w);
        let twice: Vec<_> = posts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "POSTed twice: {twice:?}");
        for n in &numbers {
            assert_eq!(in_vapi(&w, n).len(), 1, "{n}");
        }
        w.vapi.set_faults(FaultConfig::default());
        assert_code(&w.plan(&spec), 0);
    }
);

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn manifest(name: &str) -> serde_yaml::Value {
    let file = repo(&format!("examples/k8s/{name}"));
    let text = std::fs::read_to_string(&file).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn strs(v: &serde_yaml::Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|x| match x {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Number(n) => n.to_string(),
            other => panic!("not a string: {other:?}"),
        })
        .collect()
}

/// The value after `flag` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}

#[test]
fn k8s_manifests_and_the_dockerfile_match_the_binary() {
    let w = World::sqlite();
    let help = text(&w.run(&["serve", "--help"])).0;

    let deployment = manifest("deployment.yaml");
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2, "two replicas");
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_sequence().unwrap();
    let c = containers
        .iter()
        .find(|c| c["name"] == "vapictl")
        .expect("a vapictl container");
    assert!(
        containers.iter().any(|c| c["name"] == "git-sync"),
        "specs come from a git-sync sidecar"
    );
    let args = strs(&c["args"]);
    assert_eq!(args[0], "serve");
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(flag.as_str()),
            "`vapictl serve` has no {flag}"
        );
    }
    let listen = flag_value(&args, "--listen").expect("--listen beyond loopback");
    let port: u64 = listen.rsplit_once(':').unwrap().1.parse().unwrap();
    let ports = c["ports"].as_sequence().unwrap();
    let http = ports.iter().find(|p| p["name"] == "http").unwrap();
    assert_eq!(http["containerPort"].as_u64(), Some(port));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            c[probe]["httpGet"]["port"], "http",
            "{probe} on the named port"
        );
    }
    // Secrets come from a Secret, never inline.
    let env = c["env"].as_sequence().unwrap();
    for name in [
        "VAPI_API_KEY",
        "DATABASE_URL",
        "VAPICTL_SERVE_TOKEN",
        "VAPICTL_AGE_IDENTITY",
    ] {
        let var = env
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"));
        assert!(var.get("value").is_none(), "{name} is inline");
        assert_eq!(var["valueFrom"]["secretKeyRef"]["name"], "vapictl");
    }
    let secret = manifest("secret.yaml");
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["name"], "vapictl");
    for e in env {
        let key = e["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap();
        assert!(
            secret["stringData"].get(key).is_some(),
            "the Secret has no {key}"
        );
    }
    // The spec path is on the volume git-sync writes.
    let spec_path = args.last().unwrap();
    let mount = c["volumeMounts"][0]["mountPath"].as_str().unwrap();
    assert!(
        spec_path.starts_with(mount),
        "{spec_path} is not under {mount}"
    );

    let service = manifest("service.yaml");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(port));
    let monitor = manifest("servicemonitor.yaml");
    assert_eq!(monitor["kind"], "ServiceMonitor");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    let metrics_path = endpoint["path"].as_str().unwrap();

    // The binary answers on those paths, run with the manifest's own flags (bar the address and
    // the spec path, which are this test's).
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let mut own: Vec<&str> = Vec::new();
    let mut i = 1;
    while i < args.len() - 1 {
        if args[i] == "--listen" {
            i += 2;
            continue;
        }
        own.push(&args[i]);
        i += 1;
    }
    let s = Serve::start(&w, &spec, &own);
    let live = c["livenessProbe"]["httpGet"]["path"].as_str().unwrap();
    let ready = c["readinessProbe"]["httpGet"]["path"].as_str().unwrap();
    assert_eq!(s.get(live).0, 200);
    eventually(&s, "ready", || s.get(ready).0 == 200);
    let (code, text) = s.get(metrics_path);
    assert_eq!(code, 200);
    assert!(text.contains("vapictl_leader 1"), "{text}");
    assert!(
        s.log()
            .lines()
            .any(|l| l.starts_with('{') && l.contains("\"reconcile\"")),
        "one JSON line per reconcile:\n{}",
        s.log()
    );

    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    assert!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")) >= 2,
        "multi-stage"
    );
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as root: {user}"
    );
    assert!(dockerfile.contains(&format!("EXPOSE {port}")));
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd).unwrap();
    assert_eq!(cmd[0], "serve");
    for flag in cmd.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(flag.as_str()),
            "`vapictl serve` has no {flag}"
        );
    }
    assert_eq!(flag_value(&cmd, "--listen"), Some(listen));
}

#[test]
fn a_failing_owner_backs_off_while_the_others_go_on() {
    let w = World::sqlite();
    let other = "3f1c2b7e-0000-4000-8000-0000000000b2";
    let dir = w.path("vapi");
    std::fs::create_dir_all(&dir).unwrap();
    let ok_spec = SpecFile::new(other, SID, &w.token_armored).with(Entry::new(N2, "Healthy"));
    std::fs::write(dir.join("healthy.yaml"), ok_spec.to_yaml()).unwrap();
    assert_code(&w.apply(&dir.join("healthy.yaml")), 0);
    std::fs::write(
        dir.join("failing.yaml"),
        w.spec().with(Entry::new(N1, "Main")).to_yaml(),
    )
    .unwrap();
    // Vapi refuses every create: only the failing owner's number needs one.
    w.vapi.fail_next("POST", "/phone-number", 400, 10_000);
    w.vapi.reset_log();
    let s = Serve::start(&w, &dir, &[]);
    eventually(&s, "eight reconciles", || s.reconciles() >= 8.0);
    let tries = w
        .vapi
        .request_log()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    // Tried at once, then after 1, 2 and 4 intervals: far fewer tries than reconciles.
    assert!(
        (2..=5).contains(&tries),
        "{tries} tries in {} reconciles",
        s.reconciles()
    );
    assert!(s.log().contains("retry_in_s=2"), "{}", s.log());
    assert_eq!(s.metric("vapictl_owners{state=\"failed\"}"), 1.0);
    assert_eq!(s.metric("vapictl_owners{state=\"ok\"}"), 1.0);
    // The healthy owner is reconciled all along: drift in its number is healed.
    let id = in_vapi(&w, N2)[0]["id"].as_str().unwrap().to_owned();
    w.vapi.patch_number(&id, json!({"name": "Edited by hand"}));
    eventually(&s, "the healthy owner is healed", || {
        in_vapi(&w, N2)[0]["name"] == "Healthy"
    });
}

/// The controller applies through the same preflight as `apply`: a number that is not on the
/// Twilio account is refused (the owner fails, nothing is created), the others go on.
#[test]
fn the_twilio_preflight_holds_in_the_controller() {
    let w = World::sqlite();
    let t = standin::twilio::TwilioStandIn::start().unwrap();
    t.add_account(SID, TOKEN);
    t.add_number(SID, N1, true, true);
    w.vapi.link_twilio(&t);
    let spec = w.write(
        &w.spec()
            .with(Entry::new(N1, "Main"))
            .with(Entry::new(N2, "Not on the account")),
    );
    let s = Serve::start_with(
        &w,
        &spec,
        &[],
        &[
            ("VAPICTL_TWILIO_CHECK", "on"),
            ("TWILIO_BASE_URL", &t.base_url()),
        ],
    );
    eventually(&s, "the owner is reported failed", || {
        s.metric("vapictl_owners{state=\"failed\"}") == 1.0
    });
    assert_eq!(w.vapi.mutating_calls(), 0, "nothing created");
    assert!(w.recorded().rows.is_empty());
    let log = s.log();
    assert!(!log.contains(TOKEN), "{log}");
}
