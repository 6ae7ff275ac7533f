//! Shared fixtures: a headless station process, an in-process station, real clients.
//! Every station a test starts binds 127.0.0.1 port 0 and lives in its own temp directory;
//! spawned stations get WARDWATCH_FORBID_DEFAULT_DATA_DIR so none can touch a real user's data.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const FORBID_ENV: &str = "WARDWATCH_FORBID_DEFAULT_DATA_DIR";

/// A binary of this workspace, built next to the test binary (make test builds them first).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build it first (`cargo build -p ward-cli`; `make test` does)",
        p.display()
    );
    p
}

/// Polls `f` until it returns Some or the deadline passes. Deadlines here are generous
/// safety nets, not measurements: timings belong in `make bench`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Headless {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            l.lock().unwrap().push(line);
        }
    });
    lines
}

impl Headless {
    /// Starts `wardwatch run` with a one-second summary and the given extra arguments.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_env(extra, &[])
    }

    /// As `start`, with extra environment variables for the station process.
    pub fn start_env(extra: &[&str], env: &[(&str, String)]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), extra, env)
    }

    /// As `start_env`, on an existing data directory (a restart after a crash). The station
    /// runs without its sentinel: tests kill stations on purpose, and a sentinel would then
    /// sound on after the test.
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, String)]) -> Self {
        let mut args = vec!["--no-sentinel"];
        args.extend_from_slice(extra);
        Self::start_with_sentinel(dir, &args, env)
    }

    /// As `start_in`, with the station's sentinel as configured (enabled by default).
    pub fn start_with_sentinel(
        dir: tempfile::TempDir,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Self {
        // A previous run killed with -9 leaves its runtime file; wait for the new one.
        let _ = std::fs::remove_file(dir.path().join("runtime.json"));
        let mut child = Command::new(workspace_bin("wardwatch"))
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--summary-every",
                "1",
                // Tests publish with mosquitto_pub and paho as anonymous devices; the broker
                // tests that refuse anonymous clients start their own station without it.
                "--allow-anonymous",
                "--data-dir",
            ])
            .arg(dir.path())
            .args(extra)
            .env(FORBID_ENV, "1")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wardwatch");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let runtime = dir.path().join("runtime.json");
        let addr = wait_for("runtime.json", Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&runtime).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v["broker"].as_str()?.parse().ok()
        });
        Self {
            child,
            dir,
            addr,
            stdout,
            stderr,
        }
    }

    /// A config for console commands (`wardwatch patients`, `hl7`, `export`) on this
    /// station's data directory, written into `dir`.
    pub fn console_config(&self, dir: &Path) -> PathBuf {
        let path = dir.join("console.toml");
        let text = format!(
            "[station]\ndata_dir = {:?}\n",
            self.dir.path().display().to_string()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("wardwatch.sqlite")
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The newest summary counter line.
    pub fn last_counters(&self) -> Option<String> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|l| l.starts_with("clients "))
            .cloned()
    }

    /// SIGTERM, then wait: the station shuts down in order and exits 0.
    /// Stops the station and keeps its data directory for inspection.
    pub fn stop_keep(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (self.stop(), dir)
    }

    /// SIGKILL, as a power cut or a crash would; keeps the data directory.
    pub fn kill9(mut self) -> tempfile::TempDir {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!("station did not stop within 20 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Headless {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn mosquitto_pub(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new("mosquitto_pub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .output()
        .expect("mosquitto_pub (Debian mosquitto-clients) must be installed; make test installs it")
}

/// The newest stored value of a device's vital, read through a separate read-only connection.
pub fn stored_vital(db: &Path, device: &str, code: u32) -> Option<ward_store::VitalRow> {
    let s = ward_store::Store::open_read_only(db).ok()?;
    s.latest_vital(device, code).ok().flatten()
}

pub fn vitals_json(code: u32, value: f64, unit: u32) -> String {
    format!(r#"{{"obs":[{{"code":{code},"value":{value},"unit":{unit}}}]}}"#)
}

/// A config for an in-process station in `dir`, on a free port.
pub fn config(dir: &Path, sim_beds: u64) -> ward_core::Config {
    let text = format!(
        "[station]\ndata_dir = {:?}\n[broker]\nlisten = \"127.0.0.1:0\"\nallow_anonymous = true\n[sim]\nbeds = {sim_beds}\n[store]\nbatch_ms = 50\n",
        dir.display().to_string()
    );
    let path = dir.join("station.toml");
    std::fs::write(&path, text).unwrap();
    ward_core::Config::load(Some(&path), toml::Table::new()).unwrap()
}

/// Creates a station user in `cfg`'s database the way IT does with `wardwatch users add`
/// (the same core function), before or while the station runs.
pub fn add_user(
    cfg: &ward_core::Config,
    username: &str,
    role: ward_model::Role,
    pin: Option<&str>,
) {
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    ward_core::staff::change_user_offline(
        &cfg.db_path(),
        &cfg.station_id,
        "console.test",
        &ward_core::UserChange {
            username: username.into(),
            role: Some(role),
            password: Some(password_of(username)),
            pin: Some(pin.map(str::to_string)),
            ..Default::default()
        },
    )
    .unwrap();
}

/// Test users' passwords: derived from the name, so a test can sign anyone in.
pub fn password_of(username: &str) -> String {
    format!("pw-{username}-2026")
}

/// Signs a user created by [`add_user`] in; returns the session token.
pub fn sign_in(st: &ward_core::StationHandle, username: &str) -> String {
    st.staff()
        .login(username, &password_of(username))
        .unwrap()
        .0
}

/// A free loopback port, chosen by the OS. For servers that cannot be told "port 0" and must
/// come back on the same port (the hospital core restarted in an outage drill).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's Mosquitto as the hospital core: loopback only, with persistence so sessions and
/// queued messages survive its own restart.
pub struct Mosquitto {
    pub port: u16,
    /// A second listener with TLS (and client certificates required), when started with
    /// [`Mosquitto::start_tls`].
    pub tls_port: Option<u16>,
    /// Started with [`Mosquitto::start_auth`]: its password file only, no anonymous clients.
    auth: bool,
    dir: PathBuf,
    child: Option<Child>,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with Debian's
/// openssl at test time: `ca.pem`, `server.pem`/`server.key`, `client.pem`/`client.key`.
pub fn make_certs(dir: &Path) {
    let sh = |script: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian openssl) must be installed; make test installs it");
        assert!(
            out.status.success(),
            "{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=wardwatch-test-ca");
    for (name, san) in [("server", "IP:127.0.0.1"), ("client", "DNS:st-tls")] {
        sh(&format!(
            "openssl req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={name} && \
             printf 'subjectAltName={san}\\n' > {name}.ext && \
             openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem -days 2 -extfile {name}.ext"
        ));
    }
}

impl Mosquitto {
    pub fn start(dir: &Path) -> Self {
        let mut m = Self {
            port: free_port(),
            tls_port: None,
            auth: false,
            dir: dir.to_path_buf(),
            child: None,
        };
        m.restart();
        m
    }

    /// Only `user` with `password` may connect (Mosquitto's own password file, made with
    /// Debian's mosquitto_passwd).
    pub fn start_auth(dir: &Path, user: &str, password: &str) -> Self {
        let file = dir.join("passwords");
        let out = Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(&file)
            .args([user, password])
            .output()
            .expect("mosquitto_passwd (Debian mosquitto) must be installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut m = Self {
            port: free_port(),
            tls_port: None,
            auth: true,
            dir: dir.to_path_buf(),
            child: None,
        };
        m.restart();
        m
    }

    /// With a second, mutual-TLS listener using the certificates of [`make_certs`] in `dir`.
    pub fn start_tls(dir: &Path) -> Self {
        make_certs(dir);
        let mut m = Self {
            port: free_port(),
            tls_port: Some(free_port()),
            auth: false,
            dir: dir.to_path_buf(),
            child: None,
        };
        m.restart();
        m
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let conf = self.dir.join("mosquitto.conf");
        // Started as root, Mosquitto switches to the user "mosquitto", which cannot write its
        // persistence file into our temp dir; name the user we are.
        let me = Command::new("id").arg("-un").output().unwrap();
        let me = String::from_utf8_lossy(&me.stdout).trim().to_string();
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\n{}\nuser {me}\npersistence true\npersistence_location {}/\nautosave_interval 1\nlog_dest stderr\n{}",
                self.port,
                if self.auth {
                    format!(
                        "allow_anonymous false\npassword_file {}",
                        self.dir.join("passwords").display()
                    )
                } else {
                    "allow_anonymous true".into()
                },
                self.dir.display(),
                match self.tls_port {
                    Some(p) => format!(
                        "listener {p} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n",
                        d = self.dir.display()
                    ),
                    None => String::new(),
                }
            ),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("mosquitto.log")).unwrap())
            .spawn()
            .expect("mosquitto (Debian mosquitto) must be installed; make test installs it");
        self.child = Some(child);
        let port = self.port;
        wait_for("mosquitto listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// SIGSTOP (`true`) or SIGCONT: the broker hangs with its connections open, as a frozen
    /// node or a network that drops packets without closing anything looks from outside.
    pub fn freeze(&self, frozen: bool) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(if frozen { "-STOP" } else { "-CONT" })
                .arg(c.id().to_string())
                .status();
        }
    }

    /// SIGTERM: Mosquitto saves its persistence file and exits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The hospital core as a cluster: three RabbitMQ nodes on loopback (Debian's
/// rabbitmq-server with its MQTT plugin, which speaks MQTT 3.1.1). Every port is one the OS
/// picked, epmd's included (its own epmd, killed at the end); the nodes form the cluster from
/// their config files (classic peer discovery), as a hospital's would. MQTT sessions that
/// outlive a connection are quorum queues (`mqtt.durable_queue_type = quorum`, what a
/// hospital running RabbitMQ for availability sets), so such a session outlives the node it
/// was made on.
pub struct RabbitCluster {
    /// Each node's MQTT port, node 1 first.
    pub mqtt_ports: Vec<u16>,
    epmd_port: u16,
    nodes: Vec<Option<Child>>,
}

impl RabbitCluster {
    pub fn start(dir: &Path, n: usize) -> Self {
        assert!(
            Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server").exists(),
            "rabbitmq-server (Debian rabbitmq-server) must be installed; make test installs it"
        );
        std::fs::create_dir_all(dir).unwrap();
        let epmd_port = free_port();
        // One Erlang cookie for every node (and none of the machine's).
        let cookie: String = (0..20)
            .map(|i| char::from(b'A' + ((epmd_port as usize * 7 + i * 13) % 26) as u8))
            .collect();
        let names: Vec<String> = (1..=n).map(|i| format!("ww{i}@localhost")).collect();
        let mut c = Self {
            mqtt_ports: Vec::new(),
            epmd_port,
            nodes: Vec::new(),
        };
        // One node at a time, each answering MQTT before the next starts: node 1 finds no
        // peer and starts alone, every later node finds a running one and joins it. Started
        // all at once, the nodes raced each other to form the cluster, and on a busy machine
        // one of them once never came up (CI).
        for (i, name) in names.iter().enumerate() {
            let d = dir.join(format!("node{}", i + 1));
            std::fs::create_dir_all(d.join("home")).unwrap();
            let cookie_file = d.join("home/.erlang.cookie");
            std::fs::write(&cookie_file, &cookie).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cookie_file, std::fs::Permissions::from_mode(0o600)).unwrap();
            let mqtt = free_port();
            let mut conf = format!(
                "listeners.tcp.default = 127.0.0.1:{}\nmqtt.listeners.tcp.default = 127.0.0.1:{mqtt}\n\
                 mqtt.allow_anonymous = true\nmqtt.durable_queue_type = quorum\nloopback_users = none\n\
                 cluster_formation.peer_discovery_backend = classic_config\n",
                free_port()
            );
            for (j, other) in names.iter().enumerate() {
                conf += &format!(
                    "cluster_formation.classic_config.nodes.{} = {other}\n",
                    j + 1
                );
            }
            std::fs::write(d.join("rabbitmq.conf"), conf).unwrap();
            std::fs::write(d.join("enabled_plugins"), "[rabbitmq_mqtt].\n").unwrap();
            std::fs::write(d.join("rabbitmq-env.conf"), "").unwrap();
            let log_path = d.join("out.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
                .env("HOME", d.join("home"))
                .env("RABBITMQ_NODENAME", name)
                .env("RABBITMQ_DIST_PORT", free_port().to_string())
                .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
                .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
                .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
                .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
                .env("RABBITMQ_LOG_BASE", d.join("log"))
                .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
                .env("RABBITMQ_PID_FILE", d.join("pid"))
                .env("ERL_EPMD_PORT", epmd_port.to_string())
                .env("ERL_EPMD_ADDRESS", "127.0.0.1")
                .env(
                    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                    "-kernel inet_dist_use_interface {127,0,0,1}",
                )
                // The script then execs the Erlang VM: the child is the node itself, so
                // killing it is the node dying.
                .env("RUNNING_UNDER_SYSTEMD", "1")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("rabbitmq-server");
            c.mqtt_ports.push(mqtt);
            c.nodes.push(Some(child));
            c.wait_answering(i, &d);
        }
        c
    }

    /// Waits until node `i` takes an MQTT publish (the plugin starts after the node has joined
    /// the cluster). A node that exits or never answers fails the test with its own log, so
    /// a failure in CI says why.
    fn wait_answering(&mut self, i: usize, dir: &Path) {
        let port = self.mqtt_ports[i].to_string();
        let until = Instant::now() + Duration::from_secs(180);
        loop {
            let out = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv311"])
                .args(["-q", "1", "-t", "wardwatch/probe", "-m", "up"])
                .output();
            if out.is_ok_and(|o| o.status.success()) {
                return;
            }
            let exited = self.nodes[i]
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= until {
                panic!(
                    "RabbitMQ node {} {}; its logs:\n{}",
                    i + 1,
                    match exited {
                        Some(status) => format!("exited ({status}) while starting"),
                        None => "did not answer MQTT within 180 s".to_string(),
                    },
                    log_tails(dir)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Node `i` (0-based) dies at once (SIGKILL): no orderly leave, its connections cut.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        let _ = Command::new("epmd")
            .args(["-port", &self.epmd_port.to_string(), "-kill"])
            .output();
    }
}

/// The last lines of every log file under `dir` (a RabbitMQ node's console and its own logs).
fn log_tails(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("mnesia") {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                out += &format!("--- {}\n{}\n", p.display(), tail.join("\n"));
            }
        }
    }
    out
}

/// `mosquitto_sub` with a persistent MQTT 5 session (QoS 1), printing `topic payload` lines.
pub struct Subscriber {
    child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    pub fn start(port: u16, id: &str, filter: &str) -> Self {
        Self::start_version(port, id, filter, &["-V", "5", "-x", "3600"])
    }

    /// The same with MQTT 3.1.1 (a persistent session: clean session off, no expiry).
    pub fn start_v311(port: u16, id: &str, filter: &str) -> Self {
        Self::start_version(port, id, filter, &["-V", "mqttv311"])
    }

    fn start_version(port: u16, id: &str, filter: &str, version: &[&str]) -> Self {
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-c"])
            .args(version)
            .args(["-i", id, "-t", filter, "-v"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub");
        let lines = collect(child.stdout.take().unwrap());
        Self { child, lines }
    }
}

impl Subscriber {
    /// Waits until the subscription is in place: probes on `topic` until one arrives.
    pub fn wait_ready(&self, port: u16, topic: &str) {
        wait_for("the subscriber", Duration::from_secs(20), || {
            let _ = Command::new("mosquitto_pub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-t",
                    topic,
                    "-m",
                    "probe",
                ])
                .output();
            std::thread::sleep(Duration::from_millis(100));
            self.lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with(topic))
                .then_some(())
        });
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs Debian's sqlite3 command on `db` (counts made independently of the station's own
/// code) and returns its output, trimmed; `flags` e.g. `["-readonly"]` for a live station.
pub fn sqlite3(db: &Path, flags: &[&str], sql: &str) -> String {
    let out = Command::new("sqlite3")
        .args(flags)
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 (Debian sqlite3) must be installed; make test installs it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
