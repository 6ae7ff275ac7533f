//! The hospital core's password lives in a real OS credential store, never in the config:
//! GNOME Keyring over the Secret Service (in a private D-Bus session) and the kernel's
//! keyutils (in a private session keyring). Each run stores the password with
//! `wardwatch credentials set-upstream`, then a headless station signs in to a Mosquitto that
//! refuses anonymous clients and its events are confirmed. Without a store, the error says so.

use crate::support::*;
use std::process::Command;

const CORE_USER: &str = "st-keyring";

/// A station config naming the core and the store; no password anywhere in it.
fn write_config(dir: &std::path::Path, port: u16, store: &str) -> std::path::PathBuf {
    let path = dir.join("station.toml");
    std::fs::write(
        &path,
        format!(
            "[station]\nid = \"st-kr\"\ndata_dir = {:?}\n[store]\nbatch_ms = 50\n[alarms]\nnotifications = false\n\
             [upstream]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"{CORE_USER}\"\n\
             password_from = \"keyring\"\nkeyring_store = \"{store}\"\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    path
}

/// Runs `script` (sh) with `$W` the wardwatch binary, `$C` the config, `$PW` the password,
/// inside `wrapper` (a private D-Bus session or session keyring). Returns stdout+stderr.
fn run_in(
    wrapper: &[&str],
    dir: &std::path::Path,
    cfg: &std::path::Path,
    pw: &str,
    script: &str,
) -> String {
    let out = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .args(["sh", "-c", script])
        .env("W", workspace_bin("wardwatch"))
        .env("C", cfg)
        .env("PW", pw)
        // GNOME Keyring keeps its files under the test's directory, not the user's.
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("xdg-data"))
        .env("XDG_RUNTIME_DIR", dir)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove(ward_core::config::UPSTREAM_PASSWORD_ENV)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Check (missing), store, check (found), then run the station for a few seconds.
const SCRIPT: &str = r#"
echo "check-before: $("$W" credentials check --config "$C" 2>&1; echo "rc=$?")"
printf '%s\n' "$PW" | "$W" credentials set-upstream --config "$C" 2>&1
echo "check-after: $("$W" credentials check --config "$C" 2>&1; echo "rc=$?")"
"$W" run --config "$C" --listen 127.0.0.1:0 --summary-every 3 --duration 8 2>&1
"#;

fn assert_station_signed_in(dir: &std::path::Path, cfg: &std::path::Path, out: &str, store: &str) {
    assert!(
        out.contains(&format!(
            "check-before: wardwatch: error: no upstream password in the {store} credential store"
        )),
        "{out}"
    );
    assert!(out.contains("rc=1"), "{out}");
    assert!(
        out.contains(&format!(
            "upstream password stored ({store} credential store"
        )),
        "{out}"
    );
    assert!(
        out.contains("check-after: upstream password: found"),
        "{out}"
    );
    assert!(out.contains("rc=0"), "{out}");
    // The core confirmed the station's events: it signed in with the stored password.
    let db = dir.join("data").join("wardwatch.sqlite");
    let store_db = ward_store::Store::open_read_only(&db).unwrap();
    let port = port_of(cfg);
    let acked = store_db.sync_acked(&format!("127.0.0.1:{port}")).unwrap();
    assert!(acked >= 1, "no event confirmed by the core:\n{out}");
    assert!(
        out.contains(&format!(
            "hospital core 127.0.0.1:{port}: connected | backlog"
        )),
        "{out}"
    );
    // Nothing secret in the config or the trail.
    let pw = password_of(CORE_USER);
    assert!(!std::fs::read_to_string(cfg).unwrap().contains(&pw));
    assert!(!serde_json::to_string(&store_db.audit_all().unwrap())
        .unwrap()
        .contains(&pw));
}

fn port_of(cfg: &std::path::Path) -> u16 {
    let t: toml::Table = std::fs::read_to_string(cfg).unwrap().parse().unwrap();
    t["upstream"]["port"].as_integer().unwrap() as u16
}

#[test]
fn the_upstream_password_comes_from_gnome_keyring_over_the_secret_service() {
    let work = tempfile::tempdir().unwrap();
    let core = Mosquitto::start_auth(work.path(), CORE_USER, &password_of(CORE_USER));
    let cfg = write_config(work.path(), core.port, "secret-service");
    // A private session bus; GNOME Keyring unlocked (a new login keyring) inside it.
    let script = format!(
        "printf 'keyring-unlock\\n' | gnome-keyring-daemon --unlock --components=secrets >/dev/null\n{SCRIPT}"
    );
    let out = run_in(
        &["dbus-run-session", "--"],
        work.path(),
        &cfg,
        &password_of(CORE_USER),
        &script,
    );
    assert_station_signed_in(work.path(), &cfg, &out, "secret-service");
}

#[test]
fn the_upstream_password_comes_from_kernel_keyutils_on_a_headless_station() {
    let work = tempfile::tempdir().unwrap();
    let core = Mosquitto::start_auth(work.path(), CORE_USER, &password_of(CORE_USER));
    let cfg = write_config(work.path(), core.port, "keyutils");
    let out = run_in(
        &["keyctl", "session", "-"],
        work.path(),
        &cfg,
        &password_of(CORE_USER),
        SCRIPT,
    );
    assert_station_signed_in(work.path(), &cfg, &out, "keyutils");
}

#[test]
fn without_a_credential_store_the_error_says_so_and_the_station_still_runs() {
    let work = tempfile::tempdir().unwrap();
    let core = Mosquitto::start_auth(work.path(), CORE_USER, &password_of(CORE_USER));
    let cfg = write_config(work.path(), core.port, "secret-service");
    // No session bus at all (a headless server with the desktop default).
    let out = run_in(
        &["env"],
        work.path(),
        &cfg,
        "",
        r#""$W" credentials check --config "$C"; echo "rc=$?"; "$W" run --config "$C" --listen 127.0.0.1:0 --summary-every 2 --duration 5 2>&1"#,
    );
    assert!(
        out.contains("wardwatch: error: the secret-service credential store is not available here"),
        "{out}"
    );
    assert!(out.contains("rc=1"), "{out}");
    // The station ran (and would alarm); the summary names why the core is not reached.
    assert!(out.contains("hospital core 127.0.0.1:"), "{out}");
    assert!(
        out.contains("NOT CONNECTED | backlog")
            && out.contains("credential store is not available here"),
        "{out}"
    );
}
