//! The OpenAPI document of every contract (exposed today or not) is valid OpenAPI 3.1, so a new
//! contract cannot break `/api/openapi.json` unnoticed.

use std::collections::HashMap;

#[test]
fn every_contract_renders_a_valid_document() {
    let pool = pillivery_proto::descriptor_pool();
    let services: HashMap<String, String> = pool
        .services()
        .filter(|service| service.full_name().starts_with("pillivery."))
        .map(|service| (service.full_name().to_owned(), "any".to_owned()))
        .collect();
    let routes = gateway::routes::build_routes(pool, &services).expect("every contract routes");
    let document = gateway::openapi::document(&routes);
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/api/users",
        "/api/auth/login",
        "/api/.well-known/jwks.json",
        "/api/items/{itemId}/reviews",
        "/api/admin/items:import",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(
        document["paths"]["/api/auth/oauth2/{provider}/authorize"]["get"]["responses"]["302"]
            .is_object()
    );

    if let Ok(command) = std::env::var("PILLIVERY_TEST_OPENAPI_VALIDATOR") {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("openapi.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
        let mut parts = command.split_whitespace();
        let output = std::process::Command::new(parts.next().unwrap())
            .args(parts)
            .arg(&file)
            .output()
            .expect("the validator runs");
        assert!(
            output.status.success(),
            "OpenAPI 3.1 validation failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
