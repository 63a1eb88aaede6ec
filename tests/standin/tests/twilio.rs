//! Black-box tests of the Twilio stand-in as the `vapi-standin` binary runs it
//! (`--twilio-account`, `--twilio-number`): listed over basic auth, linked to the Vapi stand-in so
//! that an import sets the number's URLs. vapictl's preflight against it is tested in vapictl's
//! own suite (`tests/it/twilio.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use standin::vapi::DEFAULT_API_KEY;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-standin-test-token";
const N1: &str = "+14155552001";
const N2: &str = "+14155552002";

/// Kills the child if the test fails half-way, so no stand-in outlives the test run.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection: the status and the body, parsed as JSON.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let (_, json) = out.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

fn basic(user: &str, secret: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    format!("Basic {encoded}")
}

fn addr_of(url: &str) -> SocketAddr {
    url.strip_prefix("http://").unwrap().parse().unwrap()
}

#[test]
fn the_binary_runs_a_linked_twilio_standin_holding_the_given_account_and_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.env");
    let mut child = Reap(
        std::process::Command::new(env!("CARGO_BIN_EXE_vapi-standin"))
            .arg("--twilio-account")
            .arg(format!("{SID}={TOKEN}"))
            .arg("--twilio-number")
            .arg(format!("{SID}={N1}"))
            .arg("--ready-file")
            .arg(&ready)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let vapi_url = lines.next().unwrap().unwrap();
    let twilio_url = lines.next().unwrap().unwrap();
    let vapi_url = vapi_url.strip_prefix("VAPI_BASE_URL=").unwrap();
    let twilio_url = twilio_url.strip_prefix("TWILIO_BASE_URL=").unwrap();
    let ready_text = std::fs::read_to_string(&ready).unwrap();
    assert!(ready_text.contains(&format!("TWILIO_BASE_URL={twilio_url}\n")));

    let (vapi, twilio) = (addr_of(vapi_url), addr_of(twilio_url));
    let listing = format!("/2010-04-01/Accounts/{SID}/IncomingPhoneNumbers.json");
    let numbers = |auth: &str| request(twilio, "GET", &listing, auth, None);

    // The account answers its own credentials only, and holds the number, with no URLs yet.
    let (status, body) = numbers(&basic(SID, "wrong"));
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], 20003);
    let (status, body) = numbers(&basic(SID, TOKEN));
    assert_eq!(status, 200, "{body}");
    let listed = body["incoming_phone_numbers"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{body}");
    assert_eq!(listed[0]["phone_number"], N1);
    assert_eq!(listed[0]["voice_url"], Value::Null);

    // Linked: a Vapi import points the number at Vapi, and fails for a number Twilio lacks.
    let bearer = format!("Bearer {DEFAULT_API_KEY}");
    let import = |number: &str| {
        let body = json!({
            "provider": "twilio",
            "number": number,
            "twilioAccountSid": SID,
            "twilioAuthToken": TOKEN,
        });
        request(vapi, "POST", "/phone-number", &bearer, Some(&body))
    };
    let (status, body) = import(N1);
    assert_eq!(status, 201, "{body}");
    let (_, body) = numbers(&basic(SID, TOKEN));
    assert_eq!(
        body["incoming_phone_numbers"][0]["voice_url"],
        format!("{vapi_url}/twilio/inbound_call")
    );
    let (status, body) = import(N2);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("not found on the account"),
        "{body}"
    );
}

#[test]
fn a_twilio_number_needs_a_twilio_account() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vapi-standin"))
        .arg("--twilio-number")
        .arg(format!("{SID}={N1}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--twilio-account"), "{err}");
}
