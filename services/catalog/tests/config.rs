//! A service binary with bad configuration says why in one line and exits with 64.

#[test]
fn bad_configuration_exits_64_with_one_line() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pillivery-catalog"))
        .env_clear()
        .env("PILLIVERY_DATABASE__URL", "redis://127.0.0.1/0")
        .env("PILLIVERY_SERVER__GRPC_ADDR", "127.0.0.1:0")
        .env("PILLIVERY_SERVER__ADMIN_ADDR", "127.0.0.1:0")
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("database url"), "{stderr}");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pillivery-catalog"))
        .env_clear()
        .env("PILLIVERY_DEMO_ITEMS", "many")
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("demo_items"), "{stderr}");
}
