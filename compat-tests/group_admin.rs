//! The Java Admin client's consumer group calls (kafka-clients 4.1.1), as `kafka-consumer-groups.sh` makes
//! them: compat-tests/java/GroupAdmin.java checks every answer with a live classic-protocol member and after it
//! left (see the program's header for the list).

use std::process::Command;

use crate::common::{bounded, Broker};

#[test]
fn java_admin_list_describe_alter_delete_consumer_groups() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("compat-tests/java");
    let classpath = Command::new("bash")
        .arg(root.join("classpath.sh"))
        .output()
        .expect("bash");
    assert!(
        classpath.status.success(),
        "java client jars missing (run .ci/install-deps): {}",
        String::from_utf8_lossy(&classpath.stderr)
    );
    let cp = String::from_utf8_lossy(&classpath.stdout)
        .trim()
        .to_string();
    let src = root.join("GroupAdmin.java");
    bounded(200, move || {
        let b = Broker::start_with(&[("GROUP_INITIAL_REBALANCE_DELAY_MS", "200")]);
        let out = Command::new("java")
            .args(["-cp", &cp])
            .arg(&src)
            .args(["--bootstrap", &b.bootstrap()])
            .output()
            .expect("java");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "GroupAdmin.java failed:\n{text}");
        assert!(text.contains("GroupAdmin: OK"), "{text}");
    });
}
