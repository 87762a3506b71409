//! Accounts and tokens through the gateway's REST API, with the real user service.

mod common;

use common::start_fleet;
use serde_json::{Value, json};

async fn send(
    request: pillivery_testkit::reqwest::RequestBuilder,
) -> (u16, pillivery_testkit::reqwest::header::HeaderMap, Value) {
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, headers, json)
}

fn new_user(n: u32) -> Value {
    json!({
        "email": format!("buyer{n}@example.com"),
        "password": "secret-pass1",
        "displayName": format!("buyer{n}"),
        "realName": "김구매",
        "phone": format!("010-1234-{:04}", n),
        "city": "서울",
        "detailAddress": "강남구 1"
    })
}

#[tokio::test]
async fn sign_up_log_in_rotate_log_out() {
    let test = start_fleet().await;
    let client = pillivery_testkit::http_client();
    let base = &test.base;

    let (status, _, user) = send(client.post(format!("{base}/api/users")).json(&new_user(1))).await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["email"], json!("buyer1@example.com"));
    assert_eq!(user["social"], json!(false));
    assert!(user.get("password").is_none());

    // Every rule at once, and duplicates as 409.
    let (status, _, body) = send(client.post(format!("{base}/api/users")).json(&json!({
        "email": "not-an-email", "password": "short", "displayName": "x", "realName": "김 구매",
        "phone": "02-123", "city": " ", "detailAddress": ""
    })))
    .await;
    assert_eq!(status, 400, "{body}");
    let mut fields: Vec<&str> = body["fieldErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "city",
            "detailAddress",
            "displayName",
            "email",
            "password",
            "phone",
            "realName"
        ]
    );
    let mut same_email = new_user(2);
    same_email["email"] = json!("buyer1@example.com");
    let (status, _, body) = send(client.post(format!("{base}/api/users")).json(&same_email)).await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], json!("EMAIL_TAKEN"));
    let mut same_phone = new_user(3);
    same_phone["phone"] = json!("01012340001");
    let (status, _, body) = send(client.post(format!("{base}/api/users")).json(&same_phone)).await;
    assert_eq!(status, 409, "the phone is compared normalised");
    assert_eq!(body["code"], json!("PHONE_TAKEN"));

    // Login: the pair in the body and in the headers.
    let (status, headers, tokens) =
        send(client.post(format!("{base}/api/auth/login")).json(&json!({
            "email": "buyer1@example.com", "password": "secret-pass1"
        })))
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["tokenType"], json!("Bearer"));
    assert_eq!(tokens["expiresIn"], json!(900));
    let access = tokens["accessToken"].as_str().unwrap().to_owned();
    let refresh = tokens["refreshToken"].as_str().unwrap().to_owned();
    assert_eq!(
        headers["authorization"],
        format!("Bearer {access}").as_str()
    );
    assert_eq!(headers["refresh"], refresh.as_str());
    let (status, _, body) = send(client.post(format!("{base}/api/auth/login")).json(&json!({
        "email": "buyer1@example.com", "password": "wrong-pass1"
    })))
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], json!("BAD_CREDENTIALS"));

    // The caller comes from the token only.
    let (status, _, me) = send(
        client
            .get(format!("{base}/api/users/me"))
            .bearer_auth(&access),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(me["userId"], user["userId"]);
    let (status, _, _) = send(client.get(format!("{base}/api/users/me"))).await;
    assert_eq!(status, 401);
    let (status, _, body) = send(
        client
            .get(format!("{base}/api/admin/users/{}", user["userId"]))
            .bearer_auth(&access),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], json!("FORBIDDEN"));

    // Rotation, and reuse of a spent refresh token revokes the family.
    let (status, _, rotated) = send(
        client
            .post(format!("{base}/api/auth/refresh"))
            .json(&json!({"refreshToken": refresh})),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["refreshToken"], json!(refresh));
    let (status, _, body) = send(
        client
            .post(format!("{base}/api/auth/refresh"))
            .json(&json!({"refreshToken": refresh})),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], json!("REFRESH_TOKEN_REUSED"));
    let (status, _, _) = send(
        client
            .post(format!("{base}/api/auth/refresh"))
            .json(&json!({"refreshToken": rotated["refreshToken"]})),
    )
    .await;
    assert_eq!(status, 401, "the whole family is revoked");

    // Logout blacklists the access token at the gateway at once.
    let (status, _, _) = send(
        client
            .post(format!("{base}/api/auth/logout"))
            .bearer_auth(&access),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, body) = send(
        client
            .get(format!("{base}/api/users/me"))
            .bearer_auth(&access),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], json!("TOKEN_REVOKED"));

    // Withdrawal: every token of the account stops at the gateway at once, not only the one
    // used to withdraw.
    let (_, _, second) = send(client.post(format!("{base}/api/users")).json(&new_user(4))).await;
    let login_as_four = || {
        client.post(format!("{base}/api/auth/login")).json(&json!({
            "email": "buyer4@example.com", "password": "secret-pass1"
        }))
    };
    let (_, _, first_session) = send(login_as_four()).await;
    let (_, _, second_session) = send(login_as_four()).await;
    let (status, _, _) = send(
        client
            .delete(format!("{base}/api/users/me"))
            .bearer_auth(first_session["accessToken"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 204, "{second}");
    // The public catalog route does not check tokens; an admin-only route is checked at the
    // gateway itself, so the refusal there proves the gateway knows.
    let (status, _, body) = send(
        client
            .get(format!("{base}/api/admin/users/1"))
            .bearer_auth(second_session["accessToken"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], json!("TOKEN_REVOKED"));
    let (status, _, body) = send(login_as_four()).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], json!("BAD_CREDENTIALS"));

    // The administrator reads any profile; the keys are public.
    let (status, _, admin) = send(client.post(format!("{base}/api/auth/login")).json(&json!({
        "email": pillivery::DEFAULT_ADMIN_EMAIL, "password": "Admin-test-1"
    })))
    .await;
    assert_eq!(status, 200, "{admin}");
    let (status, _, profile) = send(
        client
            .get(format!("{base}/api/admin/users/{}", user["userId"]))
            .bearer_auth(admin["accessToken"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["email"], json!("buyer1@example.com"));
    let (status, _, jwks) = send(client.get(format!("{base}/api/.well-known/jwks.json"))).await;
    assert_eq!(status, 200);
    assert_eq!(jwks["keys"][0]["kty"], json!("OKP"));
    assert_eq!(jwks["keys"][0]["crv"], json!("Ed25519"));
    test.fleet.shutdown().await.unwrap();
}
