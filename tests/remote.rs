//! Searching on devices other processes host: `sacp serve` processes on loopback (WebSocket,
//! each hosting the CPU device), a search listing them in `[evaluate] devices` finds what a
//! local run of the same space finds; a server killed with SIGKILL mid-search has its
//! candidate evaluated by the other; a wrong token and an unreachable address are reported
//! by `sacp search --check` and refused by `sacp search` before any work.

mod common;

use sacp::search::log::Record;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BUDGET: usize = 8;

/// One test at a time: each runs two servers and a search on this machine's cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A `sacp serve` child process, killed when dropped.
struct Server {
    child: Child,
    /// `ws://127.0.0.1:PORT#0`.
    device: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sacp serve --devices cpu ARGS --token-file F` and returns it with the word of its
/// first line that starts with `scheme` (what a client dials).
fn spawn_server(args: &[&str], token_file: &Path, scheme: &str) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sacp"))
        .args(["serve", "--devices", "cpu"])
        .args(args)
        .arg("--token-file")
        .arg(token_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // Whatever it prints later is read and dropped, so that it never writes to a closed pipe.
    std::thread::spawn(move || stdout.lines().map_while(Result::ok).for_each(drop));
    let dial = line
        .split_whitespace()
        .find(|w| w.starts_with(scheme))
        .unwrap_or_else(|| panic!("sacp serve printed no {scheme} address: {line:?}"))
        .to_string();
    let server = Server {
        child,
        device: String::new(),
    };
    (server, dial)
}

/// Starts `sacp serve --devices cpu` on a free loopback port (WebSocket).
fn serve(token_file: &Path) -> Server {
    let (mut server, address) = spawn_server(&["--listen", "127.0.0.1:0"], token_file, "ws://");
    server.device = format!("{address}#0");
    server
}

fn token_file(dir: &Path, token: &str) -> PathBuf {
    let path = dir.join(format!("token-{token}"));
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

/// The space of these tests, evaluated on `devices` (none: locally) with `token_file`.
fn space(dir: &Path, devices: &[&str], token_file: Option<&Path>) -> PathBuf {
    let mut evaluate = String::new();
    if !devices.is_empty() {
        let list: Vec<String> = devices.iter().map(|d| format!("\"{d}\"")).collect();
        evaluate += &format!("devices = [{}]\n", list.join(", "));
    }
    if let Some(file) = token_file {
        evaluate += &format!("token_file = \"{}\"\n", file.display());
    }
    common::subset_search_space(dir, BUDGET, "l1", &evaluate, "")
}

/// Every logged candidate's widths and held-out accuracy, sorted by widths.
fn logged(out: &Path) -> Vec<(Vec<usize>, f64)> {
    let text = std::fs::read_to_string(out.join("candidates.jsonl")).unwrap();
    let mut records: Vec<(Vec<usize>, f64)> = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<Record>(l).unwrap())
        .map(|r| (r.widths, r.heldout_accuracy))
        .collect();
    records.sort_by(|a, b| a.0.cmp(&b.0));
    records
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

/// Winner widths, rates and the logged candidates of a search in `out`.
type Found = (serde_json::Value, serde_json::Value, Vec<(Vec<usize>, f64)>);

fn found(out: &Path) -> Found {
    let r = report(out);
    (r["winner"]["widths"].clone(), r["rates"].clone(), logged(out))
}

/// The same space searched on this process's CPU, once per test binary.
fn local_run() -> &'static Found {
    static LOCAL: OnceLock<Found> = OnceLock::new();
    LOCAL.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("remote_local_run");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let status = Command::new(env!("CARGO_BIN_EXE_sacp"))
            .args(["search", "--quiet", "--out"])
            .arg(&out)
            .arg(space(&dir, &[], None))
            .status()
            .unwrap();
        assert!(status.success());
        found(&out)
    })
}

/// The line of the search's end summary about `device` (`  worker DEVICE: N candidates...`).
fn summary_line<'a>(stderr: &'a str, device: &str) -> &'a str {
    stderr
        .lines()
        .find(|l| l.contains(&format!("worker {device}:")))
        .unwrap_or_else(|| panic!("no summary line for {device}: {stderr}"))
}

fn search(space: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sacp"));
    cmd.args(["search", "--out"]).arg(out).arg(space).env("RUST_BACKTRACE", "0");
    cmd
}

#[test]
fn two_loopback_servers_find_what_a_local_run_finds() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "s3cret");
    let (a, b) = (serve(&token), serve(&token));
    let out = dir.path().join("out");
    let space = space(dir.path(), &[&a.device, &b.device], Some(&token));
    let result = search(&space, &out).output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(stderr.contains("evaluating on 2 workers"), "{stderr}");
    for server in [&a, &b] {
        let line = summary_line(&stderr, &server.device);
        assert!(!line.contains("lost"), "{line}");
    }
    let remote = found(&out);
    assert_eq!(remote.2.len(), BUDGET);
    assert_eq!(&remote, local_run());
}

#[test]
fn a_server_killed_mid_search_loses_no_candidate_and_logs_none_twice() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "s3cret");
    let (mut a, b) = (serve(&token), serve(&token));
    let out = dir.path().join("out");
    let space = space(dir.path(), &[&a.device, &b.device], Some(&token));
    let stderr_path = dir.path().join("stderr.txt");
    let mut child = search(&space, &out)
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    // Once the first candidate is logged both servers are at work: kill the first one.
    let log = out.join("candidates.jsonl");
    let started = Instant::now();
    loop {
        let n = std::fs::read_to_string(&log)
            .map(|t| t.lines().count().saturating_sub(1))
            .unwrap_or(0);
        if n >= 1 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the search ended before a server could be killed"
        );
        assert!(started.elapsed() < Duration::from_secs(600), "no candidate logged in 10 minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
    a.child.kill().unwrap(); // SIGKILL
    a.child.wait().unwrap();
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains(&format!("worker {} lost", a.device)), "{stderr}");
    assert!(stderr.contains("its candidate goes to another worker"), "{stderr}");
    let summary = summary_line(&stderr, &b.device);
    assert!(!summary.contains("lost"), "{summary}");

    let records = logged(&out);
    assert_eq!(records.len(), BUDGET, "every chosen candidate is evaluated");
    let distinct: HashSet<&Vec<usize>> = records.iter().map(|r| &r.0).collect();
    assert_eq!(distinct.len(), BUDGET, "a candidate was logged twice");
    assert_eq!(&found(&out), local_run());
}

#[test]
fn a_wrong_token_and_an_unreachable_address_are_reported_before_any_work() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&token_file(dir.path(), "right"));
    let wrong = token_file(dir.path(), "wrong");
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ws://{}#0", listener.local_addr().unwrap())
    };
    let space = space(dir.path(), &[&server.device, &closed], Some(&wrong));

    let check = Command::new(env!("CARGO_BIN_EXE_sacp"))
        .args(["search", "--check"])
        .arg(&space)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success());
    let line = |device: &str| {
        stdout
            .lines()
            .find(|l| l.contains(device))
            .unwrap_or_else(|| panic!("--check says nothing of {device}: {stdout}"))
            .to_string()
    };
    assert!(line(&server.device).contains("refused the token"), "{stdout}");
    assert!(line(&closed).contains("cannot be reached"), "{stdout}");
    assert!(stderr.contains("2 of 2 cannot be used"), "{stderr}");

    let out = dir.path().join("out");
    let run = search(&space, &out).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("refused the token") && stderr.contains(&closed), "{stderr}");
    assert!(
        !out.join("candidates.jsonl").exists(),
        "work was done before the devices were reached"
    );

    // With the right token the server is reached.
    let right = space_with_devices(dir.path(), &server.device);
    let check = Command::new(env!("CARGO_BIN_EXE_sacp"))
        .args(["search", "--check"])
        .arg(&right)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{stdout}{}", String::from_utf8_lossy(&check.stderr));
    assert!(stdout.contains(&format!("device {}: reached", server.device)), "{stdout}");

    // SIGTERM stops the server cleanly: exit status 0, not death by the signal.
    let mut server = server;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "sacp serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

/// A space listing only `device`, its token from `SACP_REMOTE_TOKEN`'s file stand-in.
fn space_with_devices(dir: &Path, device: &str) -> PathBuf {
    let sub = dir.join("right");
    std::fs::create_dir_all(&sub).unwrap();
    space(&sub, &[device], Some(&dir.join("token-right")))
}

#[test]
fn an_iroh_server_is_reached_directly_and_checks_the_token() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "right");
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let key = dir.path().join("server.key");
    let port_text = port.to_string();
    let args = ["--iroh", "--iroh-port", &port_text, "--identity", key.to_str().unwrap()];
    let (server, dial) = spawn_server(&args, &token, "iroh://");
    let id = &dial["iroh://".len()..dial.find('@').unwrap()];
    let device = format!("iroh://{id}@127.0.0.1:{port}#0");
    let check = |token: &Path, sub: &str| {
        let sub = dir.path().join(sub);
        std::fs::create_dir_all(&sub).unwrap();
        Command::new(env!("CARGO_BIN_EXE_sacp"))
            .args(["search", "--check"])
            .arg(space(&sub, &[&device], Some(token)))
            .output()
            .unwrap()
    };
    let reached = check(&token, "right");
    let stdout = String::from_utf8_lossy(&reached.stdout);
    assert!(reached.status.success(), "{stdout}{}", String::from_utf8_lossy(&reached.stderr));
    assert!(stdout.contains(&format!("device {device}: reached")), "{stdout}");
    let refused = check(&token_file(dir.path(), "wrong"), "wrong");
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success());
    assert!(stdout.contains("refused the token"), "{stdout}");
    drop(server);
}
