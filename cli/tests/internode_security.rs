//! InterNode security against a real mosquitto: user names and passwords, TLS (`mqtts://`)
//! with a CA, a broker certificate and client certificates made at test time (`rcgen`), and
//! the refusals (a wrong password, a certificate from another CA, a certificate for another
//! name, no client certificate where one is required), each stopping the bridge with an
//! error that names what was wrong.
//!
//! Each test starts a private broker (`interstate_cli::mosquitto`: a free loopback port, its
//! own configuration and directory, killed when the test ends) and private buses.
//! Needs `/usr/sbin/mosquitto` and `/usr/bin/mosquitto_passwd` (Debian package `mosquitto`;
//! `scripts/test.sh` installs it).

mod support;

use std::path::PathBuf;
use std::process::Command;

use interstate_cli::mosquitto::Mosquitto;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::Value;
use support::*;

/// A directory of test files (certificates, keys, password files), removed when dropped.
/// Readable by all: mosquitto started as root drops to its own user before it reads them.
struct Files(PathBuf);

impl Files {
    fn new(test: &str) -> Files {
        let dir =
            std::env::temp_dir().join(format!("istr-mqtt-files-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Files(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn make_ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A certificate signed by `ca` for `names` (DNS names or IP addresses), for a server or a
/// client; written as NAME.pem and NAME.key.
fn issue(files: &Files, ca: &Ca, file: &str, names: &[&str], client: bool) -> (String, String) {
    let mut p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or(file));
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (
        files.write(&format!("{file}.pem"), &cert.pem()),
        files.write(&format!("{file}.key"), &key.serialize_pem()),
    )
}

/// A mosquitto password file with `users` (user, password), hashed by `mosquitto_passwd`.
fn password_file(files: &Files, users: &[(&str, &str)]) -> String {
    let path = files.path("passwd");
    std::fs::write(&path, "").unwrap();
    for (user, password) in users {
        let status = Command::new("/usr/bin/mosquitto_passwd")
            .args(["-b", &path, user, password])
            .status()
            .expect("run mosquitto_passwd (Debian package mosquitto)");
        assert!(status.success(), "mosquitto_passwd failed");
    }
    path
}

fn broker(test: &str, listener: &str) -> Mosquitto {
    let dir = std::env::temp_dir().join(format!("istr-mqtt-{}-{test}", std::process::id()));
    Mosquitto::start(&dir, listener).unwrap_or_else(|e| panic!("{e}"))
}

fn has(list: &[Value], machine: &str) -> bool {
    list.iter().any(|e| e["machine"] == machine)
}

/// `interstate bridge ARGS` on `bus`, once it says it connected to the broker.
fn start_bridge(bus: &mut Bus, label: &str, args: &[&str]) -> P {
    let mut all = vec!["bridge"];
    all.extend_from_slice(args);
    let p = bus.interstate(label, &all);
    bus.wait_line(p, true, "the bridge's connection", STEP_LIMIT, |l| {
        l.contains("connected to the broker")
    });
    p
}

/// Runs `interstate bridge ARGS` on `bus`, which must stop by itself with an error: its
/// stderr.
fn refused_bridge(bus: &mut Bus, broker: &Mosquitto, args: &[&str]) -> String {
    let mut all = vec!["bridge"];
    all.extend_from_slice(args);
    let p = bus.interstate("refused bridge", &all);
    let status = bus.wait_exit(p, STEP_LIMIT);
    let err = bus.err(p).join("\n");
    assert!(
        !status.success(),
        "the bridge ran on: {err}\nbroker: {}",
        broker.log()
    );
    assert!(
        !err.contains("connected to the broker"),
        "the bridge got in: {err}"
    );
    err
}

#[test]
fn tls_with_client_certificates_and_passwords_carries_a_conversation_across_nodes() {
    let files = Files::new("tls-ok");
    let ca = make_ca("interstate test CA");
    let (server_cert, server_key) = issue(&files, &ca, "server", &["127.0.0.1"], false);
    let (a_cert, a_key) = issue(&files, &ca, "host-a", &["host-a"], true);
    let (b_cert, b_key) = issue(&files, &ca, "host-b", &["host-b"], true);
    let ca_file = files.write("ca.pem", &ca.cert.pem());
    let passwd = password_file(&files, &[("host-a", "secret-a"), ("host-b", "secret-b")]);
    let pw_a = files.write("pw-a", "secret-a\n");
    let broker = broker(
        "tls-ok",
        &format!(
            "cafile {ca_file}\ncertfile {server_cert}\nkeyfile {server_key}\n\
             require_certificate true\npassword_file {passwd}\n"
        ),
    );
    let url = broker.url(true);
    let mut a = Bus::new("isec-a");
    let mut b = Bus::new("isec-b");
    a.start_hub();
    b.start_hub();
    // A's password from a file, B's on the command line: both ways reach the broker.
    let _bridge_a = start_bridge(
        &mut a,
        "bridge host-a",
        &[
            "--mqtt",
            &url,
            "--node",
            "host-a",
            "--ca-file",
            &ca_file,
            "--cert-file",
            &a_cert,
            "--key-file",
            &a_key,
            "--username",
            "host-a",
            "--password-file",
            &pw_a,
        ],
    );
    let _bridge_b = start_bridge(
        &mut b,
        "bridge host-b",
        &[
            "--mqtt",
            &url,
            "--node",
            "host-b",
            "--ca-file",
            &ca_file,
            "--cert-file",
            &b_cert,
            "--key-file",
            &b_key,
            "--credentials",
            "host-b:secret-b",
        ],
    );
    let _worker = b.start_sink("worker", &["--expect", "3"]);
    a.wait_ps("worker through the bridge", |l| has(l, "worker"));
    let source = a.probe("source sensor", &["source", "sensor", "worker", "3"]);
    let done = a.wait_json(source, "the source's summary", STEP_LIMIT, |v| {
        v.get("acknowledged").is_some()
    });
    assert_eq!(
        done["acknowledged"],
        Value::Bool(true),
        "{done}{}{}",
        a.dump(),
        b.dump()
    );
    assert_eq!(done["tally"]["distinct"], 3, "{done}");
    assert_eq!(done["tally"]["duplicates"], 0, "{done}");
    assert_eq!(done["failed"], 0, "{done}");
}

#[test]
fn a_wrong_password_is_refused_and_the_bridge_says_so() {
    let files = Files::new("pw");
    let passwd = password_file(&files, &[("host-a", "right")]);
    let broker = broker("pw", &format!("password_file {passwd}\n"));
    let url = broker.url(false);
    let mut a = Bus::new("ipw-a");
    a.start_hub();
    let err = refused_bridge(
        &mut a,
        &broker,
        &[
            "--mqtt",
            &url,
            "--node",
            "host-a",
            "--credentials",
            "host-a:wrong",
        ],
    );
    assert!(
        err.contains("refused the connection")
            && (err.contains("bad user name or password") || err.contains("not authorised"))
            && err.contains("user 'host-a'"),
        "{err}"
    );
    // No credentials at all on a broker that wants them: refused too, and said so.
    let err = refused_bridge(&mut a, &broker, &["--mqtt", &url, "--node", "host-a"]);
    assert!(
        err.contains("refused the connection") && err.contains("no user name was given"),
        "{err}"
    );
    // The right one gets in.
    let _ok = start_bridge(
        &mut a,
        "bridge host-a",
        &[
            "--mqtt",
            &url,
            "--node",
            "host-a",
            "--credentials",
            "host-a:right",
        ],
    );
}

#[test]
fn tls_refusals_name_the_ca_the_name_or_the_missing_client_certificate() {
    let files = Files::new("tls-bad");
    let ca = make_ca("interstate test CA");
    let other = make_ca("some other CA");
    let (server_cert, server_key) = issue(&files, &ca, "server", &["127.0.0.1"], false);
    let ca_file = files.write("ca.pem", &ca.cert.pem());
    let other_ca_file = files.write("other-ca.pem", &other.cert.pem());
    let broker = broker(
        "tls-bad",
        &format!(
            "cafile {ca_file}\ncertfile {server_cert}\nkeyfile {server_key}\nrequire_certificate true\n"
        ),
    );
    let url = broker.url(true);
    let mut a = Bus::new("itls-a");
    a.start_hub();

    let err = refused_bridge(
        &mut a,
        &broker,
        &[
            "--mqtt",
            &url,
            "--node",
            "host-a",
            "--ca-file",
            &other_ca_file,
        ],
    );
    assert!(
        err.contains("not signed by a CA in") && err.contains("other-ca.pem"),
        "{err}"
    );

    let err = refused_bridge(
        &mut a,
        &broker,
        &[
            "--mqtt",
            &url,
            "--node",
            "host-a",
            "--ca-file",
            &ca_file,
            "--tls-server-name",
            "broker.example",
        ],
    );
    assert!(err.contains("not valid for 'broker.example'"), "{err}");

    let err = refused_bridge(
        &mut a,
        &broker,
        &["--mqtt", &url, "--node", "host-a", "--ca-file", &ca_file],
    );
    assert!(
        err.contains("ended the TLS handshake") && err.contains("--cert-file"),
        "{err}"
    );

    // A client certificate from another CA: the broker refuses it, and the bridge says
    // which one it offered.
    let (c_cert, c_key) = issue(&files, &other, "stranger", &["host-a"], true);
    let err = refused_bridge(
        &mut a,
        &broker,
        &[
            "--mqtt",
            &url,
            "--node",
            "host-a",
            "--ca-file",
            &ca_file,
            "--cert-file",
            &c_cert,
            "--key-file",
            &c_key,
        ],
    );
    assert!(
        err.contains("refused this node's client certificate"),
        "{err}"
    );
}

#[test]
fn tls_settings_without_mqtts_and_unreadable_files_are_refused_before_connecting() {
    let mut a = Bus::new("itls-args");
    a.start_hub();
    let (status, _, err) = a.run(&[
        "bridge",
        "--mqtt",
        "mqtt://127.0.0.1:1",
        "--ca-file",
        "/nonexistent/ca.pem",
    ]);
    assert!(!status.success());
    assert!(err.contains("use mqtts://"), "{err}");
    let (status, _, err) = a.run(&[
        "bridge",
        "--mqtt",
        "mqtts://127.0.0.1:1",
        "--ca-file",
        "/nonexistent/ca.pem",
    ]);
    assert!(!status.success());
    assert!(
        err.contains("cannot read the CA file /nonexistent/ca.pem"),
        "{err}"
    );
    let (status, _, err) = a.run(&["bridge", "--mqtt", "mqtt://127.0.0.1:1", "--username", "u"]);
    assert!(!status.success());
    assert!(err.contains("INTERSTATE_MQTT_PASSWORD"), "{err}");
}
