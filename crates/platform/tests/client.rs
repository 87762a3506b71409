//! The resilient client's rules, driven through `Upstream::call` with scripted attempts (the
//! channel is never used, so no server is needed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pillivery_platform::client::{CallError, CallOptions, Upstream, UpstreamConfig};
use pillivery_platform::resilience::BreakerState;
use pillivery_platform::shutdown::{Shutdown, Tasks};
use tonic::Status;

fn upstream(tune: impl FnOnce(&mut UpstreamConfig)) -> Upstream {
    let mut config = UpstreamConfig::new("http://127.0.0.1:9");
    config.policy.retry_base_ms = 1;
    config.policy.retry_max_ms = 2;
    tune(&mut config);
    Upstream::new("scripted", &config, &Tasks::new(), &Shutdown::new()).unwrap()
}

const RETRYABLE: CallOptions = CallOptions {
    deadline: Duration::from_secs(2),
    retryable: true,
};
const NOT_RETRYABLE: CallOptions = CallOptions {
    deadline: Duration::from_secs(2),
    retryable: false,
};

/// Answers UNAVAILABLE `failures` times, then OK; counts attempts.
fn flaky(
    failures: u32,
    attempts: Arc<AtomicU32>,
) -> impl FnMut(tonic::transport::Channel, Duration) -> futures::future::Ready<Result<u32, Status>>
{
    move |_, _| {
        let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
        futures::future::ready(if attempt <= failures {
            Err(Status::unavailable("connection refused"))
        } else {
            Ok(attempt)
        })
    }
}

#[tokio::test]
async fn a_safe_call_is_retried_after_unavailable() {
    let attempts = Arc::new(AtomicU32::new(0));
    let answer = upstream(|_| {})
        .call(RETRYABLE, flaky(1, attempts.clone()))
        .await;
    assert_eq!(answer.unwrap(), 2);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_unsafe_call_is_never_retried() {
    let attempts = Arc::new(AtomicU32::new(0));
    let answer = upstream(|_| {})
        .call(NOT_RETRYABLE, flaky(1, attempts.clone()))
        .await;
    assert!(
        matches!(answer, Err(CallError::Status(status)) if status.code() == tonic::Code::Unavailable)
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retries_stop_at_the_configured_number() {
    let attempts = Arc::new(AtomicU32::new(0));
    let answer = upstream(|config| config.policy.max_retries = 2)
        .call(RETRYABLE, flaky(10, attempts.clone()))
        .await;
    assert!(answer.is_err());
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn business_answers_do_not_open_the_circuit() {
    let client = upstream(|_| {});
    for _ in 0..50 {
        let answer: Result<(), _> = client
            .call(RETRYABLE, |_, _| async {
                Err(Status::not_found("no such item"))
            })
            .await;
        assert!(
            matches!(answer, Err(CallError::Status(status)) if status.code() == tonic::Code::NotFound)
        );
    }
    assert_eq!(client.breaker().state(), BreakerState::Closed);
}

#[tokio::test]
async fn faults_open_the_circuit_and_then_calls_fail_without_trying() {
    let client = upstream(|_| {});
    let attempts = Arc::new(AtomicU32::new(0));
    for _ in 0..20 {
        let _ = client
            .call(NOT_RETRYABLE, flaky(u32::MAX, attempts.clone()))
            .await;
    }
    assert_eq!(client.breaker().state(), BreakerState::Open);
    let before = attempts.load(Ordering::SeqCst);
    let answer = client
        .call(NOT_RETRYABLE, flaky(u32::MAX, attempts.clone()))
        .await;
    assert!(matches!(answer, Err(CallError::CircuitOpen { .. })));
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        before,
        "no attempt while open"
    );
}

#[tokio::test]
async fn the_deadline_covers_the_whole_call() {
    let client = upstream(|_| {});
    let answer: Result<(), _> = client
        .call(
            CallOptions {
                deadline: Duration::from_millis(50),
                retryable: true,
            },
            |_, remaining| async move {
                assert!(remaining <= Duration::from_millis(50));
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            },
        )
        .await;
    assert!(matches!(answer, Err(CallError::DeadlineExceeded { .. })));
}

#[tokio::test]
async fn the_bulkhead_bounds_calls_in_flight() {
    let client = upstream(|config| {
        config.policy.max_concurrent = 1;
        config.policy.max_queue_wait_ms = 10;
    });
    let started = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let slow = {
        let client = client.clone();
        let (started, release) = (started.clone(), release.clone());
        tokio::spawn(async move {
            client
                .call(NOT_RETRYABLE, move |_, _| {
                    let (started, release) = (started.clone(), release.clone());
                    async move {
                        // Holding the only slot until the test has tried a second call.
                        started.notify_one();
                        release.notified().await;
                        Ok(())
                    }
                })
                .await
        })
    };
    started.notified().await;
    let answer: Result<(), _> = client.call(NOT_RETRYABLE, |_, _| async { Ok(()) }).await;
    assert!(matches!(answer, Err(CallError::Overloaded { .. })));
    release.notify_one();
    assert!(slow.await.unwrap().is_ok());
}

#[tokio::test]
async fn tonics_own_timeout_counts_as_a_timeout_fault() {
    let client = upstream(|_| {});
    for _ in 0..20 {
        let answer: Result<(), _> = client
            .call(
                CallOptions {
                    deadline: Duration::from_millis(2),
                    retryable: true,
                },
                |_, remaining| async move {
                    // What tonic answers when the `grpc-timeout` it was given runs out: the
                    // answer is ready the moment it is polled, just after the deadline (a
                    // blocking pause, so our own timer cannot win the race).
                    std::thread::sleep(remaining + Duration::from_millis(3));
                    Err(Status::cancelled("Timeout expired"))
                },
            )
            .await;
        assert!(
            matches!(answer, Err(CallError::DeadlineExceeded { .. })),
            "{answer:?}"
        );
    }
    assert_eq!(client.breaker().state(), BreakerState::Open);
}
