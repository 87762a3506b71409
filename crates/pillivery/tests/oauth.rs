//! OAuth2 login through the gateway's REST API against a fake provider started by the test:
//! authorize (302 with state and PKCE) → the provider's consent (simulated) → callback → a
//! first-time user completes the profile and gets tokens; the second login gets tokens at once.

mod common;

use std::collections::HashMap;

use pillivery::{Fleet, FleetOptions};
use pillivery_testkit::oauth::{FakeOAuthProvider, client_id, client_secret};
use pillivery_testkit::reqwest::Url;
use serde_json::{Value, json};
use user::config::OAuthProvider;

/// The gateway URL the provider sends the browser back to; never followed here.
const CALLBACK_BASE: &str = "http://shop.test/api/auth/oauth2";

#[tokio::test]
async fn first_login_completes_the_profile_and_the_second_logs_straight_in() {
    let provider = FakeOAuthProvider::start(CALLBACK_BASE).await;
    let data = tempfile::tempdir().unwrap();
    let mut options = FleetOptions::for_tests(data.path());
    options.oauth.providers.insert(
        "kakao".to_owned(),
        OAuthProvider {
            authorize_url: provider.authorize_url("kakao"),
            token_url: provider.token_url("kakao"),
            userinfo_url: provider.userinfo_url("kakao"),
            ..OAuthProvider::kakao(
                client_id("kakao"),
                client_secret("kakao"),
                provider.redirect_uri("kakao"),
            )
        },
    );
    let fleet = Fleet::start(options).await.unwrap();
    let base = format!("http://{}", fleet.http_addr);
    let client = pillivery_testkit::http_client();
    let profile = json!({
        "id": 4242,
        "kakao_account": {"email": "shopper@kakao.test", "is_email_valid": true, "is_email_verified": true}
    });

    let login = || async {
        let authorize = client
            .get(format!("{base}/api/auth/oauth2/kakao/authorize"))
            .send()
            .await
            .unwrap();
        assert_eq!(authorize.status().as_u16(), 302);
        let location = Url::parse(authorize.headers()["location"].to_str().unwrap()).unwrap();
        assert!(
            location
                .as_str()
                .starts_with(&provider.authorize_url("kakao"))
        );
        let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
        assert_eq!(query["code_challenge_method"], "S256");
        // The shopper consents at the provider, which redirects back with a code.
        let code = provider.register("kakao", &query["code_challenge"], profile.clone());
        let mut callback_url =
            Url::parse(&format!("{base}/api/auth/oauth2/kakao/callback")).unwrap();
        callback_url
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &query["state"]);
        let callback = client.get(callback_url).send().await.unwrap();
        let status = callback.status().as_u16();
        (status, callback.json::<Value>().await.unwrap())
    };

    let (status, first) = login().await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["needsProfile"], json!(true));
    assert_eq!(first["email"], json!("shopper@kakao.test"));
    assert_eq!(first["accessToken"], Value::Null);
    let completed = client
        .post(format!("{base}/api/auth/oauth2/complete"))
        .json(&json!({
            "signupToken": first["signupToken"],
            "displayName": "카카오손님",
            "phone": "010-5555-4242",
            "city": "부산",
            "detailAddress": "해운대구 1"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(completed.status().as_u16(), 200);
    let tokens: Value = completed.json().await.unwrap();
    let me: Value = client
        .get(format!("{base}/api/users/me"))
        .bearer_auth(tokens["accessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["social"], json!(true));
    assert_eq!(me["email"], json!("shopper@kakao.test"));

    let (status, second) = login().await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["needsProfile"], json!(false));
    assert_eq!(second["signupToken"], Value::Null);
    assert!(
        second["accessToken"]
            .as_str()
            .is_some_and(|token| !token.is_empty())
    );

    // A provider the fleet does not know.
    let unknown = client
        .get(format!("{base}/api/auth/oauth2/naver/authorize"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    fleet.shutdown().await.unwrap();
}
