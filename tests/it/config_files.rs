//! Every shipped configuration passes `omniroute validate`; a broken file
//! lists all its problems and exits 2 without panicking.

use std::path::Path;
use std::process::Command;

fn validate(path: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_omniroute"))
        .args(["validate", "--config"])
        .arg(path)
        .env_remove("OMNIROUTE_NATS__URL")
        .output()
        .expect("run omniroute validate")
}

#[test]
fn every_shipped_configuration_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("examples")] {
        for entry in std::fs::read_dir(&dir).expect("config dir") {
            let p = entry.expect("entry").path();
            if p.extension().is_some_and(|e| e == "toml") {
                files.push(p);
            }
        }
    }
    assert!(
        files.len() >= 3,
        "expected the default and the examples, found {files:?}"
    );
    for f in files {
        let out = validate(&f);
        assert!(
            out.status.success(),
            "{} is invalid:\n{}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_broken_file_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("broken.toml");
    std::fs::write(
        &f,
        "[nats]\nurl = \"\"\nspeed = 9\n[[queues]]\nname = \"\"\nchannels = [\"telex\"]\n[[agents]]\nid = \"a b\"\nskills = { x = 0 }\n",
    )
    .expect("write");
    let out = validate(&f);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "nats.speed = 9: unknown key",
        "nats.url = \"\"",
        "queues[0].name = \"\"",
        "queues[0].channels[0] = \"telex\"",
        "agents[0].id = \"a b\"",
        "agents[0].skills.x = 0",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");

    // Not TOML at all, and a missing file: clear errors, exit 2.
    std::fs::write(&f, "[nats\nurl = ").expect("write");
    let out = validate(&f);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.toml"));
    let out = validate(&dir.path().join("missing.toml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read configuration"));
}
